"""Fake of `comfy.model_patcher.ModelPatcher`: remembers the module and its two devices."""


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        if not hasattr(model, "device"):
            model.device = offload_device  # as ComfyUI's does

    def model_dtype(self):
        return next(self.model.parameters()).dtype


CoreModelPatcher = ModelPatcher
