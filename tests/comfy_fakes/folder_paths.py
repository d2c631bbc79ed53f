"""Fake of ComfyUI's `folder_paths`: only what the MarDini nodes use, rooted at a test folder."""
import os
import tempfile

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
models_dir = os.environ.get("MARDINI_FAKE_MODELS_DIR") or tempfile.mkdtemp(prefix="mardini-fake-models-")
folder_names_and_paths: dict = {}


def get_filename_list(folder_name):
    paths, extensions = folder_names_and_paths[folder_name]
    names = set()
    for root in paths:
        if os.path.isdir(root):
            names.update(f for f in os.listdir(root) if os.path.splitext(f)[1] in extensions)
    return sorted(names)


def get_full_path(folder_name, filename):
    for root in folder_names_and_paths[folder_name][0]:
        path = os.path.join(root, filename)
        if os.path.isfile(path):
            return path
    return None


def get_full_path_or_raise(folder_name, filename):
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


input_dir = os.environ.get("MARDINI_FAKE_INPUT_DIR") or tempfile.mkdtemp(prefix="mardini-fake-input-")


def get_input_directory():
    return input_dir
