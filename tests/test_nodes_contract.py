"""The node pack's public contract: node ids, widget names/order/types/defaults/ranges, outputs.

Users' saved workflows store node ids and widget values by position, so any change here breaks them:
a failing test means "add a new node or an optional input instead", not "update the snapshot".
"""
import pytest

from comfy_fakes import load_pack

PACK = load_pack()
SEED_MAX = 0xFFFFFFFFFFFFFFFF
SAMPLING = [
    ("steps", "INT", {"default": 25, "min": 1, "max": 1000}),
    ("guidance", "FLOAT", {"default": 2.5, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01}),
    ("seed", "INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
    ("eta", "FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
]
RESTORE_DETAIL = ("restore_detail", "BOOLEAN", {"default": True})
FIT = ("fit", ["crop", "resize", "off"], {"default": "crop"})
MASK_PRESETS = ["image-to-video (first)", "image-to-video (middle)", "image-to-video (last)",
                "interpolation", "loop", "expansion", "custom"]

CONTRACT = {
    "MarDiniModelLoader": {
        "display": "Load MarDini Model",
        "inputs": [
            ("model", ["(embedded default)"], {}),  # first entry fixed; checkpoint files follow
            ("dtype", ["auto", "bf16", "fp16", "fp32"], {"default": "auto"}),
            ("attention", ["auto", "sdpa", "xformers"], {"default": "auto"}),
            # "auto" appended (saved workflows keep "gpu"/"cpu"); the default is ComfyUI's memory manager's choice
            ("planner_after_run", ["gpu", "cpu", "auto"], {"default": "auto"}),
        ],
        "optional": [("compile", "BOOLEAN", {"default": False}),
                     ("interpolator", ["rife", "dis"], {"default": "rife"}),
                     ("anchor_quality", ["best", "fast"], {"default": "fast"}),
                     ("interp_model", "INTERP_MODEL", {})],  # core's Load Frame Interpolation Model
        "returns": [("MARDINI_MODEL", "model"), ("VAE", "vae")],
    },
    "MarDiniFrameMask": {
        "display": "MarDini Frame Mask",
        "inputs": [
            ("frames", "INT", {"default": 9, "min": 2, "max": 1024, "step": 1}),
            ("preset", MASK_PRESETS, {"default": "image-to-video (first)"}),
            ("given_frames", "INT", {"default": 2, "min": 1, "max": 1024, "step": 1}),
            ("pattern", "STRING", {"default": "x........", "multiline": False}),
        ],
        "returns": [("MARDINI_MASK", "mask"), ("STRING", "pattern")],
    },
    "MarDiniVAEEncode": {
        "display": "MarDini VAE Encode",
        "inputs": [("model", "MARDINI_MODEL", {}), ("vae", "VAE", {}), ("images", "IMAGE", {}), ("mask", "MARDINI_MASK", {})],
        "optional": [FIT],
        "returns": [("MARDINI_LATENTS", "latents")],
    },
    "MarDiniPlanner": {
        "display": "MarDini Planner",
        "inputs": [("model", "MARDINI_MODEL", {}), ("latents", "MARDINI_LATENTS", {}), ("mask", "MARDINI_MASK", {})],
        "returns": [("MARDINI_PLAN", "plan")],
    },
    "MarDiniSampler": {
        "display": "MarDini Sampler",
        "inputs": [("model", "MARDINI_MODEL", {}), ("plan", "MARDINI_PLAN", {"lazy": True}), ("latents", "MARDINI_LATENTS", {}),
                   ("mask", "MARDINI_MASK", {}), *SAMPLING],  # lazy: run only where the sampler reads it (same link, same order)
        "optional": [("guidance_follows_mask", "BOOLEAN", {"default": True, "label_on": "auto", "label_off": "always"}),
                     ("fidelity", "FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.05, "round": 0.01}),
                     ("sampler", ["ddim", "dpmpp_2m"], {"default": "ddim"})],
        "returns": [("LATENT", "latent")],
    },
    "MarDiniFrameAssembler": {
        "display": "MarDini Frame Assembler",
        "inputs": [("vae", "VAE", {}), ("latent", "LATENT", {}), ("images", "IMAGE", {}), ("mask", "MARDINI_MASK", {})],
        "optional": [RESTORE_DETAIL, FIT],
        "returns": [("IMAGE", "frames")],
    },
    "MarDiniLongVideo": {
        "display": "MarDini Long Video",
        "inputs": [
            ("model", "MARDINI_MODEL", {}), ("vae", "VAE", {}), ("images", "IMAGE", {}),
            ("mode", ["slow motion", "expansion", "loop"], {"default": "slow motion"}),
            ("frames", "INT", {"default": 128, "min": 2, "max": 4096}),
            ("overlap", "INT", {"default": 0, "min": 0, "max": 1024}),
            SAMPLING[0], ("guidance", "FLOAT", {**SAMPLING[1][2], "default": 1.0}), SAMPLING[2], SAMPLING[3],
        ],
        "optional": [RESTORE_DETAIL, FIT,
                     ("fidelity", "FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.05, "round": 0.01}),
                     ("sampler", ["ddim", "dpmpp_2m"], {"default": "ddim"})],
        "returns": [("IMAGE", "frames"), ("STRING", "plan")],
    },
    "MarDiniSmootherVideo": {
        "display": "MarDini Smoother / Slower Video",
        "inputs": [
            ("model", "MARDINI_MODEL", {}), ("vae", "VAE", {}), ("video", "IMAGE", {}),
            ("multiplier", ["x2", "x4", "x8"], {"default": "x2"}),
            ("fps", "FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
            SAMPLING[0], SAMPLING[2],
        ],
        "optional": [RESTORE_DETAIL, FIT],
        "returns": [("IMAGE", "frames"), ("FLOAT", "fps"), ("STRING", "plan")],
    },
}


def describe(cls, node_id, section="required"):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional"}, "new inputs must be optional and appended, never required"
    inputs = []
    for name, entry in spec.get(section, {}).items():
        kind, options = entry[0], dict(entry[1]) if len(entry) > 1 else {}
        options.pop("tooltip", None)
        if node_id == "MarDiniModelLoader" and name == "model":
            kind = kind[:1]
        inputs.append((name, kind, options))
    return inputs


def test_node_ids_are_exactly_the_contract():
    assert list(PACK.NODE_CLASS_MAPPINGS) == list(CONTRACT)
    assert PACK.NODE_DISPLAY_NAME_MAPPINGS == {k: v["display"] for k, v in CONTRACT.items()}
    assert PACK.WEB_DIRECTORY == "./js"


@pytest.mark.parametrize("node_id", list(CONTRACT))
def test_node_contract(node_id):
    cls, want = PACK.NODE_CLASS_MAPPINGS[node_id], CONTRACT[node_id]
    assert describe(cls, node_id) == want["inputs"]
    assert describe(cls, node_id, "optional") == want.get("optional", [])
    assert list(zip(cls.RETURN_TYPES, cls.RETURN_NAMES)) == want["returns"]
    assert cls.CATEGORY == "MarDini"
    assert callable(getattr(cls, cls.FUNCTION))
    assert cls.DESCRIPTION


JARGON = ("DM ", "generator", "v-prediction", "noise_mask", "DDIM", "classifier-free", "latent")


@pytest.mark.parametrize("node_id", list(CONTRACT))
def test_every_input_has_a_tooltip_in_an_artists_words(node_id):
    spec = PACK.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    for name, entry in {**spec["required"], **spec.get("optional", {})}.items():
        assert len(entry) > 1 and entry[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert not [w for w in JARGON if w in entry[1]["tooltip"]], f"{node_id}.{name}: {entry[1]['tooltip']}"


def test_defaults_fit_their_ranges():
    for node_id, cls in PACK.NODE_CLASS_MAPPINGS.items():
        for name, entry in cls.INPUT_TYPES()["required"].items():
            options = entry[1] if len(entry) > 1 else {}
            if isinstance(entry[0], list) and "default" in options:
                assert options["default"] in entry[0], (node_id, name)
            if "min" in options:
                assert options["min"] <= options["default"] <= options["max"], (node_id, name)


def test_node_search_finds_the_smoother_and_long_video_by_the_words_artists_type():
    """ComfyUI's node search reads SEARCH_ALIASES (server.py: object_info's search_aliases)."""
    words = {node_id: set(getattr(cls, "SEARCH_ALIASES", [])) for node_id, cls in PACK.NODE_CLASS_MAPPINGS.items()}
    assert all(isinstance(w, str) and w == w.strip().lower() for ws in words.values() for w in ws)
    for word in ("interpolation", "frame interpolation", "rife", "film", "slow motion", "fps", "frame rate"):
        assert word in words["MarDiniSmootherVideo"], word
    for word in ("extend video", "loop", "slow motion"):
        assert word in words["MarDiniLongVideo"], word
    for word in ("image to video", "loop"):
        assert word in words["MarDiniSampler"], word
