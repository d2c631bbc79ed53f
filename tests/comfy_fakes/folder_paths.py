"""Fake of ComfyUI's `folder_paths`: only what the MarDini nodes use, rooted at a test folder."""
import atexit
import os
import shutil
import tempfile

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
models_dir = os.environ.get("MARDINI_FAKE_MODELS_DIR")
if not models_dir:  # fresh per test process, removed when it ends
    models_dir = tempfile.mkdtemp(prefix="mardini-fake-models-")
    atexit.register(shutil.rmtree, models_dir, ignore_errors=True)
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


input_dir = os.environ.get("MARDINI_FAKE_INPUT_DIR")
if not input_dir:  # a fresh input folder per test process, removed when it ends
    input_dir = tempfile.mkdtemp(prefix="mardini-fake-input-")
    atexit.register(shutil.rmtree, input_dir, ignore_errors=True)


def get_input_directory():
    return input_dir
