"""Writes the example workflows (ComfyUI UI format) in this folder: python workflows/build_workflows.py

One graph per task of the paper, plus the "smoother / slower video" job. Only MarDini nodes and
ComfyUI core nodes; the example images and video come with the pack (assets/) and are copied into
ComfyUI's input folder when the pack loads (nodes/examples.py), under the names used here. The model
and its autoencoder are the embedded default's: a template runs as opened, with nothing to download.
Defaults finish on a 2-core CPU in a few minutes; each template's note says what to raise on a GPU.
tests/test_workflows.py checks every file against the node specs of a real ComfyUI.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
WIDTH, GAP, TOP = 260, 60, 40  # a node's width, the gap between columns (links climb there), the top
COLUMN = WIDTH + GAP  # a column's width and the gap between columns (links run there), in canvas px
TITLE = 30  # LiteGraph's title bar, drawn above a node's position
NOTE_SIZE = [WIDTH, 330]
STAGE_ROW = 420  # the top of the row of processing nodes; the buses run in the band above it
# heights at least what the frontend computes for each node's widgets (ComfyUI 0.33, frontend 1.49)
SIZES = {"LoadImage": 330, "LoadVideo": 330, "MarDiniSampler": 300, "MarDiniSmootherVideo": 300, "MarDiniLongVideo": 370,
         "SaveAnimatedWEBP": 380, "MarDiniFrameMask": 230, "PreviewAny": 200, "MarDiniModelLoader": 230,
         "MarDiniVAEEncode": 130, "MarDiniPlanner": 80, "MarDiniFrameAssembler": 150, "GetVideoComponents": 100,
         "ImageFromBatch": 100, "BatchImagesNode": 80}


class Graph:
    """A tiny builder for LiteGraph's serialised form: nodes, typed links, widget values in order, and the
    reroute points of buses (one output feeding nodes in several columns runs along a band above them)."""

    def __init__(self):
        self.nodes, self.links, self.reroutes, self.link_parents = [], [], [], {}

    def node(self, type_, col, y, inputs=(), outputs=(), widgets=(), title=None):
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": [TOP + COLUMN * col, y], "size": [WIDTH, SIZES.get(type_, 150)],
            "flags": {}, "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "slot_index": i, "links": []} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": type_}, "widgets_values": list(widgets),
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, text):
        """A Note at the top left, beside the graph (a frontend node: it is never sent to the server)."""
        node = self.node("Note", 0, TOP, widgets=[text], title="About this template")
        node["size"] = list(NOTE_SIZE)
        node["color"], node["bgcolor"] = "#432", "#653"
        return node

    def link(self, src, out, dst, inp):
        out_slot = next(i for i, o in enumerate(src["outputs"]) if o["name"] == out)
        in_slot = next(i for i, o in enumerate(dst["inputs"]) if o["name"] == inp)
        type_ = src["outputs"][out_slot]["type"]
        link_id = len(self.links) + 1
        self.links.append([link_id, src["id"], out_slot, dst["id"], in_slot, type_])
        src["outputs"][out_slot]["links"].append(link_id)
        dst["inputs"][in_slot]["link"] = link_id
        return link_id

    def bus(self, src, out, targets, y, start=None):
        """`src.out` into each (node, input) of `targets`, along the band at height `y`: one reroute in the
        gap left of each target column (and of the column at x = `start`, to climb to the band sooner),
        chained left to right, so no link passes behind another node."""
        columns = sorted({dst["pos"][0] for dst, _ in targets} | ({start} if start else set()))
        parent = None
        for x in columns:
            reroute = {"id": len(self.reroutes) + 1, "pos": [x - GAP // 2, y], "linkIds": []}
            if parent:
                reroute["parentId"] = parent["id"]
            self.reroutes.append(reroute)
            for dst, inp in targets:
                if dst["pos"][0] == x:
                    self.link_parents[self.link(src, out, dst, inp)] = reroute["id"]
            parent = reroute
        for link_id, reroute_id in self.link_parents.items():  # a reroute lists every link that passes through it
            chain = reroute_id
            while chain:
                reroute = self.reroutes[chain - 1]
                if link_id not in reroute["linkIds"]:
                    reroute["linkIds"].append(link_id)
                chain = reroute.get("parentId")

    def save(self, name, pattern):
        for n in self.nodes:
            for o in n["outputs"]:
                o["links"] = o["links"] or None
        extra = {"ds": {"scale": 0.6, "offset": [70, 130]}}  # in view, clear of the toolbar, text drawn (>= 0.6)
        if self.reroutes:
            extra["reroutes"] = self.reroutes
            extra["linkExtensions"] = [{"id": i, "parentId": r} for i, r in sorted(self.link_parents.items())]
        graph = {
            "last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
            "links": self.links, "groups": [], "config": {}, "extra": extra, "version": 0.4,
        }
        (HERE / f"{name}.json").write_text(json.dumps(graph, indent=1) + "\n")
        thumbnail(HERE / f"{name}.jpg", name.removeprefix("MarDini "), pattern)


def thumbnail(path, title, pattern, width=480, height=270):
    """The template browser's picture: the task's frame timeline as the node draws it (x = given)."""
    img = np.full((height, width, 3), (38, 34, 32), np.uint8)
    scale = 1.3
    while scale > 0.6 and cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)[0][0] > width - 48:
        scale -= 0.05  # long titles shrink to fit the card
    cv2.putText(img, title, (24, 70), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 2, cv2.LINE_AA)
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


def below(node, margin=20):
    """The height just below `node` (its title bar and a margin cleared) in the same column."""
    return node["pos"][1] + node["size"][1] + TITLE + margin


def load_images(g, names, col=0, y=STAGE_ROW):
    """LoadImage for each name, stacked in `col`, batched in order in the next column (BatchImagesNode):
    -> the IMAGE node."""
    loads = []
    for name in names:
        loads.append(g.node("LoadImage", col, y, outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")], widgets=[name, "image"]))
        y = below(loads[-1])
    if len(loads) == 1:
        return loads[0]
    # an autogrowing input list: one slot per image plus the empty slot the UI always offers
    middle = (loads[0]["pos"][1] + loads[-1]["pos"][1]) // 2 if len(loads) > 2 else STAGE_ROW  # short climbs for its links
    batch = g.node("BatchImagesNode", col + 1, middle, inputs=[(f"images.image{i}", "IMAGE") for i in range(len(loads) + 1)],
                   outputs=[("IMAGE", "IMAGE")])
    for i, (slot, load) in enumerate(zip(batch["inputs"], loads + [None])):
        slot["label"] = f"image{i}"
        if load:
            g.link(load, "IMAGE", batch, slot["name"])
    return batch


def load_video(g, name="mardini_video.mp4"):
    """LoadVideo (under the note) -> GetVideoComponents (beside it): -> the components node (images, audio, fps, bit_depth)."""
    video = g.node("LoadVideo", 0, STAGE_ROW, outputs=[("VIDEO", "VIDEO")], widgets=[name, "image"])
    parts = g.node("GetVideoComponents", 1, STAGE_ROW, inputs=[("video", "VIDEO")],
                   outputs=[("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"), ("bit_depth", "INT")])
    g.link(video, "VIDEO", parts, "video")
    return parts


def load_model(g, col=1):
    """The embedded default model and its own autoencoder (the loader's vae output): nothing to download."""
    return g.node("MarDiniModelLoader", col, TOP, inputs=[("interp_model", "INTERP_MODEL")],  # optional, left open
                  outputs=[("model", "MARDINI_MODEL"), ("vae", "VAE")],
                  widgets=["(embedded default)", "auto", "auto", "auto", False, "rife", "fast"])  # interpolator, anchor_quality


def save_webp(g, image_node, out, prefix, col, y=TOP, fps=8.0, fps_from=None):
    """Save Animated WEBP; nothing is placed below it, where its preview grows after a run."""
    inputs = [("images", "IMAGE")] + ([("fps", "FLOAT")] if fps_from else [])
    save = g.node("SaveAnimatedWEBP", col, y, inputs=inputs, outputs=[("images", "IMAGE")],
                  widgets=[f"MarDini/{prefix}", fps, False, 90, "default"])
    if fps_from:
        save["inputs"][1]["widget"] = {"name": "fps"}
        g.link(fps_from[0], fps_from[1], save, "fps")
    g.link(image_node, out, save, "images")


def show_plan(g, source, col):
    """The schedule text of a long node in a preview box at the top of `col` (the Save node goes below it)."""
    show = g.node("PreviewAny", col, TOP, inputs=[("source", "*")], outputs=[("STRING", "STRING")], title="Plan of model runs")
    g.link(source, "plan", show, "source")
    return show


def clip_workflow(name, note, images, preset, pattern, given=2, guidance=2.5, steps=25, sources=None, fps=8.0):
    """The one-window chain: mask, encode, plan once, sample, assemble, save.

    Sources (note, loader, pictures, mask) fill the left columns; the five stages sit in one row to their
    right; the loader's, the mask's and the pictures' outputs reach the stages along buses above that row.
    `sources(g)` -> (graph's IMAGE node, mask column, mask height) replaces the default Load Image column.
    """
    g = Graph()
    g.note(note)
    model = load_model(g)
    if sources is None:
        pixels = load_images(g, images)
        mask_at = (1, STAGE_ROW if pixels["type"] == "LoadImage" else below(pixels))  # under Batch Images, if any
    else:
        pixels, mask_at = sources(g)
    stage = mask_at[0] + 1
    mask = g.node("MarDiniFrameMask", *mask_at, outputs=[("mask", "MARDINI_MASK"), ("pattern", "STRING")],
                  widgets=[len(pattern), preset, given, pattern])
    enc = g.node("MarDiniVAEEncode", stage, STAGE_ROW, inputs=[("model", "MARDINI_MODEL"), ("vae", "VAE"), ("images", "IMAGE"),
                                                                ("mask", "MARDINI_MASK")], outputs=[("latents", "MARDINI_LATENTS")],
                 widgets=["crop"])
    # lower than the encoder's latents link to the sampler, which passes over it
    planner = g.node("MarDiniPlanner", stage + 1, STAGE_ROW + 110, inputs=[("model", "MARDINI_MODEL"), ("latents", "MARDINI_LATENTS"),
                                                                           ("mask", "MARDINI_MASK")], outputs=[("plan", "MARDINI_PLAN")])
    sampler = g.node("MarDiniSampler", stage + 2, STAGE_ROW, inputs=[("model", "MARDINI_MODEL"), ("plan", "MARDINI_PLAN"),
                                                                    ("latents", "MARDINI_LATENTS"), ("mask", "MARDINI_MASK")],
                     outputs=[("latent", "LATENT")], widgets=[steps, guidance, 0, "fixed", 0.0, True, -1.0, "ddim"])
    assemble = g.node("MarDiniFrameAssembler", stage + 3, STAGE_ROW, inputs=[("vae", "VAE"), ("latent", "LATENT"), ("images", "IMAGE"),
                                                                            ("mask", "MARDINI_MASK")], outputs=[("frames", "IMAGE")],
                      widgets=[True, "crop"])
    band = STAGE_ROW - TITLE - 20
    g.bus(model, "model", [(enc, "model"), (planner, "model"), (sampler, "model")], band)
    g.bus(model, "vae", [(enc, "vae"), (assemble, "vae")], band - 20)
    g.bus(mask, "mask", [(enc, "mask"), (planner, "mask"), (sampler, "mask"), (assemble, "mask")], band - 40)
    g.bus(pixels, "IMAGE", [(enc, "images"), (assemble, "images")], band - 60,
          start=None if pixels["pos"][0] == enc["pos"][0] - COLUMN else pixels["pos"][0] + COLUMN)
    g.link(enc, "latents", planner, "latents")
    g.link(enc, "latents", sampler, "latents")
    g.link(planner, "plan", sampler, "plan")
    g.link(sampler, "latent", assemble, "latent")
    save_webp(g, assemble, "frames", name.removeprefix("MarDini ").replace(" ", "_"), col=stage + 4, y=STAGE_ROW, fps=fps)
    g.save(name, pattern)


GPU = "On a GPU: raise {what}."
FREER = ("the picture size (any multiple of 32); for a freer take than the model's best guess, set the Sampler's "
         "fidelity below 1 (e.g. 0.5) and steps to 25")
OPEN = ("the picture size (any multiple of 32). Here the Sampler's fidelity -1 (the model's own) samples at 0.8: where "
        "an end is generated the model's best guess alone would stand still; lower it (e.g. 0.5) for a freer take, or "
        "set the sampler to dpmpp_2m and steps to 10 for a faster one")
CONTINUED = ("the picture size (any multiple of 32). Here the Sampler's fidelity -1 (the model's own) keeps the anchor: "
             "the new frames carry the given frames' motion on (the embedded model adds no correction there, so its "
             "networks are skipped); lower it (e.g. 0.5, with 25 steps) for a freer take")
ANCHOR = ("Each frame made between two given frames starts from RIFE 4.x's in-between (the loader's interpolator). "
          "The embedded model, calibrated on real clips, keeps that in-between as it is (its correction cost PSNR there), "
          "so its planner and generator are skipped for those frames; a model you train further may correct it. "
          "The loader's anchor_quality best asks RIFE four ways and averages: higher "
          "PSNR, a little softer, about 3x the time. To use your own RIFE or FILM checkpoint, connect core's Load "
          "Frame Interpolation Model to the loader's interp_model.")
CPU_TIME = "On a 2-core CPU it ran in {time} in a fresh ComfyUI 0.33 (loading the model adds about a second)."


def note(what, inputs, gpu, time):
    return "\n\n".join([what, inputs, GPU.format(what=gpu), CPU_TIME.format(time=time)])


EXAMPLE_IMAGES = ("The example pictures are frames of Big Buck Bunny (c) Blender Foundation, CC-BY-3.0; they were copied "
                  "into ComfyUI's input folder when the pack loaded. Pick your own in Load Image (any size: 'fit' "
                  "crops them to multiples of 32).")
TIMES = {  # "Prompt executed in", all templates run one after another in one fresh ComfyUI 0.33 (CPU, 2 shared cores), ../shared/tools comfy_ui_check.js --run
    "image to video": "58 s",
    "interpolation": "3 s",
    "loop": "3 s (16 frames)",
    "expansion": "3 s",
    "slow motion": "4 s (25 frames)",
    "novel view": "3 s",
    "smoother": "3 s (17 frames in, 33 out)",
}


def expansion_workflow():
    def first_frames(g):
        """Load Video -> its frames -> the first 3 (Image From Batch); the mask goes below them."""
        parts = load_video(g)
        first = g.node("ImageFromBatch", 2, STAGE_ROW, inputs=[("image", "IMAGE")], outputs=[("IMAGE", "IMAGE")], widgets=[0, 3])
        g.link(parts, "images", first, "image")
        return first, (2, below(first))

    clip_workflow("MarDini video expansion", note(
        "Video expansion: the first 3 frames of a video, and 6 more frames that continue their motion (9 in all, the "
        "embedded model's window). For longer continuations use MarDini Long Video, mode expansion.",
        "The example video is 17 frames of Big Buck Bunny (c) Blender Foundation, CC-BY-3.0, copied into ComfyUI's "
        "input folder when the pack loaded; pick your own in Load Video.",
        CONTINUED, TIMES["expansion"]),
        None, "expansion", "xxx......", given=3, steps=25, sources=first_frames, fps=12.5)


def long_node_workflow(g, node, prefix, fps, fps_from=None):
    """A long node's outputs: its plan at the top of the next column, Save Animated WEBP below it (level with
    the node where there is room)."""
    col = (node["pos"][0] - TOP) // COLUMN + 1
    show = show_plan(g, node, col)
    save_webp(g, node, "frames", prefix, col=col, y=max(below(show), node["pos"][1]), fps=fps, fps_from=fps_from)


def long_video_workflow(name, note_text, images, mode, frames, fps, pattern):
    """Pictures -> MarDini Long Video (its plan shown beside) -> Save Animated WEBP."""
    g = Graph()
    g.note(note_text)
    model = load_model(g)
    pixels = load_images(g, images)
    # level with the pictures' batch (its images input, the third slot, beside the batch's output)
    long_video = g.node("MarDiniLongVideo", 2, max(TOP, pixels["pos"][1] - 2 * 20), inputs=[("model", "MARDINI_MODEL"), ("vae", "VAE"), ("images", "IMAGE")],
                        outputs=[("frames", "IMAGE"), ("plan", "STRING")],
                        widgets=[mode, frames, 0, 12, 1.0, 0, "fixed", 0.0, True, "crop", -1.0, "ddim"])
    g.link(model, "model", long_video, "model")
    g.link(model, "vae", long_video, "vae")
    g.link(pixels, "IMAGE", long_video, "images")
    long_node_workflow(g, long_video, name.removeprefix("MarDini ").split(" from ")[0].replace(" ", "_"), fps)
    g.save(name, pattern)


def slow_motion_workflow():
    keys = {round(i * 24 / 3) for i in range(4)}
    long_video_workflow("MarDini slow motion from keyframes", note(
        "Slow motion from keyframes (paper, Fig. 10): 4 pictures spread over 25 frames, everything between made by the "
        "model in several runs of its 9-frame window (the plan is shown in the text box). " + ANCHOR,
        EXAMPLE_IMAGES,
        "frames to 128 (the paper's 4 -> 128)", TIMES["slow motion"]),
        [f"mardini_keyframe_{i}.jpg" for i in range(1, 5)], "slow motion", 25, 12.0,
        "".join("x" if i in keys else "." for i in range(25)))


def loop_workflow():
    long_video_workflow("MarDini loop", note(
        "Loop: two pictures, the video goes from the first to the second and back, 16 frames that repeat seamlessly "
        "(MarDini Long Video, mode loop: the frames between are made by the model, the loop closes on the first "
        "picture). From one picture alone the small embedded model makes almost no motion, so a loop needs two or "
        "more. " + ANCHOR,
        EXAMPLE_IMAGES, "frames (any length; more pictures make a longer cycle)", TIMES["loop"]),
        ["mardini_first_frame.png", "mardini_last_frame.png"], "loop", 16, 8.0, "x.......x.......x")


def smoother_workflow():
    g = Graph()
    g.note(note(
        "Smoother or slower video: a new frame between every two frames of the video (x2; x4 and x8 make 3 and 7), "
        "the video's own frames kept exactly. Saved at twice the fps: the same duration, smoother. For slow motion "
        "instead, disconnect the fps link into Save and type the video's own fps. " + ANCHOR,
        "The example video is 17 frames of Big Buck Bunny (c) Blender Foundation, CC-BY-3.0 (12.5 fps), copied into "
        "ComfyUI's input folder when the pack loaded; pick your own in Load Video.",
        "the multiplier as you like", TIMES["smoother"]))
    model = load_model(g)
    parts = load_video(g)
    smooth = g.node("MarDiniSmootherVideo", 2, TOP, inputs=[("model", "MARDINI_MODEL"), ("vae", "VAE"), ("video", "IMAGE"),
                                                           ("fps", "FLOAT")],
                    outputs=[("frames", "IMAGE"), ("fps", "FLOAT"), ("plan", "STRING")],
                    widgets=["x2", 12.5, 12, 0, "fixed", True, "crop"])
    smooth["inputs"][3]["widget"] = {"name": "fps"}
    g.link(model, "model", smooth, "model")
    g.link(model, "vae", smooth, "vae")
    g.link(parts, "images", smooth, "video")
    g.link(parts, "fps", smooth, "fps")
    long_node_workflow(g, smooth, "smoother", 25.0, fps_from=(smooth, "fps"))
    g.save("MarDini smoother or slower video", "x." * 16 + "x")


def main():
    clip_workflow("MarDini image to video", note(
        "Image to video: one picture as the first frame, 8 more frames made from it (guidance 2.5, the paper's "
        "setting for one given end). Honest note: from one picture the small embedded model moves only a little "
        "(about a third of a real clip's motion); give two or more frames (video expansion) and it continues "
        "their motion.", EXAMPLE_IMAGES, OPEN, TIMES["image to video"]),
        ["mardini_first_frame.png"], "image-to-video (first)", "x........")
    clip_workflow("MarDini interpolation", note(
        "Interpolation: a first and a last picture, the 7 frames between made by the model (guidance turns itself "
        "off between two given frames). For many in-betweens use MarDini Smoother / Slower Video or Long Video. " + ANCHOR,
        EXAMPLE_IMAGES, FREER, TIMES["interpolation"]),
        ["mardini_first_frame.png", "mardini_last_frame.png"], "interpolation", "x.......x")
    loop_workflow()
    expansion_workflow()
    slow_motion_workflow()
    clip_workflow("MarDini novel view", note(
        "Novel-view synthesis (paper, Fig. 8): two photos of an object from two angles as first and last frame, the "
        "views between made by the model (zero-shot). The example pictures stand in for two views: replace them with "
        "your own photos. " + ANCHOR, EXAMPLE_IMAGES, FREER, TIMES["novel view"]),
        ["mardini_view_a.jpg", "mardini_view_b.jpg"], "interpolation", "x.......x")
    smoother_workflow()


if __name__ == "__main__":
    main()
