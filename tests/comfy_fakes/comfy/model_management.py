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
