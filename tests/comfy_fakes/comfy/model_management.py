"""Fake of the few `comfy.model_management` functions the nodes call (CPU only)."""
import torch


class InterruptProcessingException(BaseException):  # a BaseException, as in ComfyUI
    pass


interrupt_processing = False


def interrupt_current_processing(value=True):
    global interrupt_processing
    interrupt_processing = value


def throw_exception_if_processing_interrupted():
    global interrupt_processing
    if interrupt_processing:
        interrupt_processing = False
        raise InterruptProcessingException()


def get_torch_device():
    return torch.device("cpu")


def intermediate_device():
    return torch.device("cpu")


def unet_offload_device():
    return torch.device("cpu")


def soft_empty_cache(force=False):
    pass


def unet_dtype(device=None, model_params=0, supported_dtypes=(torch.float16, torch.bfloat16, torch.float32), weight_dtype=None):
    return torch.float32  # what ComfyUI picks on a CPU


def vae_device():
    return torch.device("cpu")


def vae_offload_device():
    return torch.device("cpu")


def vae_dtype(device=None, allowed_dtypes=()):
    return torch.float32


def intermediate_dtype():
    return torch.float32


def dtype_size(dtype):
    return torch.tensor([], dtype=dtype).element_size()


class LoadedModel:
    def __init__(self, patcher):
        self.model = patcher

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        self.model.model.to(self.model.offload_device)
        UNLOADS.append(self.model)
        return True


current_loaded_models: list = []
LOADS: list = []  # every patcher load_models_gpu was asked for, in order (tests read it)
UNLOADS: list = []


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False):
    for patcher in models:
        LOADS.append(patcher)
        patcher.model.to(patcher.load_device)
        if not any(entry.model is patcher for entry in current_loaded_models):
            current_loaded_models.insert(0, LoadedModel(patcher))


def load_model_gpu(model):
    load_models_gpu([model])
