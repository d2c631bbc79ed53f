"""Writes the example workflows (ComfyUI UI format) in this folder: python workflows/build_workflows.py

One graph per task of the paper. Only MarDini nodes and ComfyUI core nodes; images are read from
ComfyUI's input folder under the names below (put your own there, or pick others in LoadImage).
tests/test_workflows.py checks every file against the node specs of a real ComfyUI.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 256  # pixels; a multiple of every preset's size step


class Graph:
    """A tiny builder for LiteGraph's serialised form: nodes, typed links, widget values in order."""

    def __init__(self):
        self.nodes, self.links = [], []

    def node(self, type_, col, row, inputs=(), outputs=(), widgets=(), title=None):
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": [40 + 330 * col, 40 + 230 * row], "size": [300, 330 if type_ == "LoadImage" else 150],
            "flags": {}, "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "slot_index": i, "links": []} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": type_}, "widgets_values": list(widgets),
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def link(self, src, out, dst, inp):
        out_slot = next(i for i, o in enumerate(src["outputs"]) if o["name"] == out)
        in_slot = next(i for i, o in enumerate(dst["inputs"]) if o["name"] == inp)
        type_ = src["outputs"][out_slot]["type"]
        link_id = len(self.links) + 1
        self.links.append([link_id, src["id"], out_slot, dst["id"], in_slot, type_])
        src["outputs"][out_slot]["links"].append(link_id)
        dst["inputs"][in_slot]["link"] = link_id

    def save(self, name, note, pattern):
        for n in self.nodes:
            for o in n["outputs"]:
                o["links"] = o["links"] or None
        graph = {
            "last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
            "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [60, 60]}, "mardini_note": note}, "version": 0.4,
        }
        (HERE / f"{name}.json").write_text(json.dumps(graph, indent=1) + "\n")
        thumbnail(HERE / f"{name}.jpg", name.removeprefix("mardini_").replace("_", " "), pattern)


def thumbnail(path, title, pattern, width=480, height=270):
    """The template browser's picture: the task's frame timeline as the node draws it (x = given)."""
    img = np.full((height, width, 3), (38, 34, 32), np.uint8)
    cv2.putText(img, title, (24, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (235, 235, 235), 2, cv2.LINE_AA)
    left, right, top, bottom = 24, width - 24, 120, 180
    cell = (right - left) / len(pattern)
    for i, c in enumerate(pattern):
        color = (59, 163, 226) if c == "x" else (75, 63, 58)  # BGR of the widget's orange / slate
        x0, x1 = int(left + i * cell), int(left + (i + 1) * cell) - (1 if cell > 3 else 0)
        cv2.rectangle(img, (x0, top), (max(x0, x1 - 1), bottom), color, -1)
    given = pattern.count("x")
    caption = f"{len(pattern)} frames: {given} given, {len(pattern) - given} generated"
    cv2.putText(img, caption, (24, 225), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (190, 190, 190), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def load_images(g, names):
    """LoadImage for each name, batched in order (BatchImagesNode), then resized: -> the IMAGE node."""
    loads = [g.node("LoadImage", 0, 1.6 * i, outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")], widgets=[n, "image"])
             for i, n in enumerate(names)]
    if len(loads) == 1:
        return resize(g, loads[0], 0)
    # an autogrowing input list: one slot per image plus the empty slot the UI always offers
    batch = g.node("BatchImagesNode", 1, 0, inputs=[(f"images.image{i}", "IMAGE") for i in range(len(loads) + 1)],
                   outputs=[("IMAGE", "IMAGE")])
    for i, (slot, load) in enumerate(zip(batch["inputs"], loads + [None])):
        slot["label"] = f"image{i}"
        if load:
            g.link(load, "IMAGE", batch, slot["name"])
    return resize(g, batch, 1)


def resize(g, image_node, row):
    scale = g.node("ImageScale", 1, row, inputs=[("image", "IMAGE")], outputs=[("IMAGE", "IMAGE")],
                   widgets=["area", SIZE, SIZE, "center"])
    g.link(image_node, "IMAGE", scale, "image")
    return scale


def model_and_vae(g, col=2):
    model = g.node("MarDiniModelLoader", col, 0, outputs=[("model", "MARDINI_MODEL")],
                   widgets=["(embedded default)", "auto", "auto", "gpu"])
    vae = g.node("VAELoader", col, 1, outputs=[("VAE", "VAE")], widgets=["taef2"], title="VAE the model was trained with")
    return model, vae


def save_webp(g, image_node, out, prefix, col, row=0, fps=8.0):
    save = g.node("SaveAnimatedWEBP", col, row, inputs=[("images", "IMAGE")], outputs=[("images", "IMAGE")],
                  widgets=[f"MarDini/{prefix}", fps, False, 90, "default"])
    g.link(image_node, out, save, "images")


def clip_workflow(name, note, images, preset, pattern, given=2, guidance=1.0, image_node=None):
    """The one-window chain: mask, encode, plan once, sample, assemble, save."""
    g = Graph() if image_node is None else image_node[0]
    pixels = load_images(g, images) if image_node is None else image_node[1]
    model, vae = model_and_vae(g)
    mask = g.node("MarDiniFrameMask", 2, 2, outputs=[("mask", "MARDINI_MASK"), ("pattern", "STRING")],
                  widgets=[len(pattern), preset, given, pattern])
    enc = g.node("MarDiniVAEEncode", 3, 0, inputs=[("model", "MARDINI_MODEL"), ("vae", "VAE"), ("images", "IMAGE"),
                                                  ("mask", "MARDINI_MASK")], outputs=[("latents", "MARDINI_LATENTS")])
    planner = g.node("MarDiniPlanner", 3, 1, inputs=[("model", "MARDINI_MODEL"), ("latents", "MARDINI_LATENTS"),
                                                    ("mask", "MARDINI_MASK")], outputs=[("plan", "MARDINI_PLAN")])
    sampler = g.node("MarDiniSampler", 4, 0, inputs=[("model", "MARDINI_MODEL"), ("plan", "MARDINI_PLAN"),
                                                    ("latents", "MARDINI_LATENTS"), ("mask", "MARDINI_MASK")],
                     outputs=[("latent", "LATENT")], widgets=[25, guidance, 0, "fixed", 0.0])
    assemble = g.node("MarDiniFrameAssembler", 4, 2, inputs=[("vae", "VAE"), ("latent", "LATENT"), ("images", "IMAGE"),
                                                            ("mask", "MARDINI_MASK")], outputs=[("frames", "IMAGE")],
                      widgets=[True])
    for dst in (enc, planner, sampler):
        g.link(model, "model", dst, "model")
    for dst in (enc, planner, sampler, assemble):
        g.link(mask, "mask", dst, "mask")
    g.link(vae, "VAE", enc, "vae")
    g.link(vae, "VAE", assemble, "vae")
    g.link(pixels, "IMAGE", enc, "images")
    g.link(pixels, "IMAGE", assemble, "images")
    g.link(enc, "latents", planner, "latents")
    g.link(enc, "latents", sampler, "latents")
    g.link(planner, "plan", sampler, "plan")
    g.link(sampler, "latent", assemble, "latent")
    save_webp(g, assemble, "frames", name.removeprefix("mardini_"), col=5)
    g.save(name, note, pattern)


def expansion_workflow():
    g = Graph()
    video = g.node("LoadVideo", 0, 0, outputs=[("VIDEO", "VIDEO")], widgets=["mardini_video.mp4", "image"])
    parts = g.node("GetVideoComponents", 0, 1, inputs=[("video", "VIDEO")],
                   outputs=[("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"), ("bit_depth", "INT")])
    first = g.node("ImageFromBatch", 0, 2, inputs=[("image", "IMAGE")], outputs=[("IMAGE", "IMAGE")], widgets=[0, 3])
    g.link(video, "VIDEO", parts, "video")
    g.link(parts, "images", first, "image")
    clip_workflow("mardini_expansion", "Video expansion: the first 3 frames of a video continue for 6 more.",
                  None, "expansion", "xxx......", given=3, guidance=2.5, image_node=(g, resize(g, first, 3)))


def slow_motion_workflow():
    g = Graph()
    pixels = load_images(g, [f"mardini_keyframe_{i}.png" for i in range(1, 5)])
    model, vae = model_and_vae(g)
    long_video = g.node("MarDiniLongVideo", 3, 0, inputs=[("model", "MARDINI_MODEL"), ("vae", "VAE"), ("images", "IMAGE")],
                        outputs=[("frames", "IMAGE"), ("plan", "STRING")],
                        widgets=["slow motion", 128, 0, 25, 1.0, 0, "fixed", 0.0, True])
    g.link(model, "model", long_video, "model")
    g.link(vae, "VAE", long_video, "vae")
    g.link(pixels, "IMAGE", long_video, "images")
    show = g.node("PreviewAny", 4, 2, inputs=[("source", "*")], outputs=[("STRING", "STRING")], title="Plan of windows")
    g.link(long_video, "plan", show, "source")
    save_webp(g, long_video, "frames", "slow_motion", col=4, fps=24.0)
    keys = {round(i * 127 / 3) for i in range(4)}
    g.save("mardini_slow_motion", "Hierarchical generation (paper, Fig. 10): 4 images -> 128-frame slow motion.",
           "".join("x" if i in keys else "." for i in range(128)))


def main():
    clip_workflow("mardini_image_to_video", "Image-to-video: one image as the first frame, 8 frames generated (guidance 2.5).",
                  ["mardini_first_frame.png"], "image-to-video (first)", "x........", guidance=2.5)
    clip_workflow("mardini_interpolation", "Interpolation: first and last frame given, 7 frames between (no guidance).",
                  ["mardini_first_frame.png", "mardini_last_frame.png"], "interpolation", "x.......x")
    clip_workflow("mardini_loop", "Loop: one image as first and last frame, the motion between generated.",
                  ["mardini_first_frame.png"], "loop", "x.......x")
    expansion_workflow()
    slow_motion_workflow()
    clip_workflow("mardini_novel_view", "Zero-shot novel-view synthesis (paper, Fig. 8): two views of an object as first "
                  "and last frame, the views between generated.", ["mardini_view_a.png", "mardini_view_b.png"],
                  "interpolation", "x.......x")


if __name__ == "__main__":
    main()
