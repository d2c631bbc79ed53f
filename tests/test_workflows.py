"""Every example workflow is a valid ComfyUI graph that uses only our nodes and ComfyUI core nodes.

Core node types and the specs of those the workflows use come from a real ComfyUI's /object_info
(tests/comfyui_core_nodes.json says which; recorded with ../shared/tools/comfy_harness.sh in a fresh
ComfyUI 0.33 with only this pack); ours come from the pack. Checked: node types exist, links join an
existing output to an existing input of the same type (both ends agree), every link input is
connected, every widget value fits its input (type, range, choices), every file a template loads is
an example the pack ships (and copies into ComfyUI's input folder), and the mask nodes build.
"""
import json
from pathlib import Path

import pytest

from comfy_fakes import REPO, load_pack

PACK = load_pack()
CORE = json.loads((Path(__file__).with_name("comfyui_core_nodes.json")).read_text())
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
TASKS = {"image to video", "interpolation", "loop", "video expansion", "slow motion from keyframes", "novel view",
         "smoother or slower video"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # drawn by the frontend, never sent to the server
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
AUTOGROW = "COMFY_AUTOGROW_V3"  # a growing list of inputs "<name>.<prefix>0", "<name>.<prefix>1", ...
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# combos listing files of the user's install (input folder, models): any name may be saved
FILE_COMBOS = {("LoadImage", "image"), ("LoadVideo", "file"), ("VAELoader", "vae_name"), ("MarDiniModelLoader", "model")}
INPUT_FILE_COMBOS = {("LoadImage", "image"), ("LoadVideo", "file")}


def spec_of(node_type):
    if node_type in PACK.NODE_CLASS_MAPPINGS:
        cls = PACK.NODE_CLASS_MAPPINGS[node_type]
        spec = cls.INPUT_TYPES()
        return {"input": spec, "input_order": {group: list(inputs) for group, inputs in spec.items()},
                "output": list(cls.RETURN_TYPES), "output_name": list(cls.RETURN_NAMES)}
    return CORE["specs"][node_type]


def inputs_of(spec):
    """(name, type, options) in widget order: required then optional."""
    for group in ("required", "optional"):
        for name in spec.get("input_order", {}).get(group, []):
            entry = spec["input"][group][name]
            kind = entry[0]
            options = entry[1] if len(entry) > 1 else {}
            if isinstance(kind, list):
                kind, options = "COMBO", {**options, "options": kind}
            yield name, kind, options


def check_widget(node_type, name, kind, options, value):
    where = f"{node_type}.{name}={value!r}"
    if kind == "COMBO":
        assert isinstance(value, str), where
        if (node_type, name) in INPUT_FILE_COMBOS:
            # a file of ComfyUI's input folder: one of the examples the pack copies there, listed by the real ComfyUI
            assert value in PACK.nodes.examples.EXAMPLES and value in options["options"], where
            assert (PACK.nodes.examples.ASSETS / PACK.nodes.examples.EXAMPLES[value]).is_file(), where
        elif (node_type, name) == ("MarDiniModelLoader", "model"):
            assert value == "(embedded default)", f"{where}: a template must run with nothing downloaded"
        elif (node_type, name) not in FILE_COMBOS:
            assert value in options["options"], where
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
        assert options.get("min", value) <= value <= options.get("max", value), where
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert options.get("min", value) <= value <= options.get("max", value), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where


def check_autogrow(node, name, template):
    """The slots in order, of the template's type, at least `min` of them connected."""
    ((_, (kind, *_)),) = template["input"]["required"].items()
    slots = [i for i in node["inputs"] if i["name"].startswith(name + ".")]
    assert [i["name"] for i in slots] == [f"{name}.{template['prefix']}{n}" for n in range(len(slots))], node["type"]
    assert all(i["type"] == kind for i in slots), node["type"]
    assert template.get("min", 0) <= sum(i["link"] is not None for i in slots) <= template.get("max", len(slots)), node["type"]


def test_one_workflow_per_task():
    assert {p.stem.removeprefix("MarDini ") for p in WORKFLOWS} == TASKS
    for path in WORKFLOWS:
        assert path.with_suffix(".jpg").is_file(), f"{path.name} has no thumbnail for the template browser"


def test_core_list_is_from_a_real_comfyui():
    assert len(CORE["core_node_types"]) > 300 and "KSampler" in CORE["core_node_types"]
    assert not set(CORE["core_node_types"]) & set(PACK.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid(path):
    graph = json.loads(path.read_text())
    assert graph["version"] == 0.4 and isinstance(graph["links"], list)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert len(nodes) == len(graph["nodes"]) and graph["last_node_id"] >= max(nodes)
    links = {link[0]: link for link in graph["links"]}
    assert len(links) == len(graph["links"]) and graph["last_link_id"] >= max(links)

    notes = [n for n in graph["nodes"] if n["type"] in FRONTEND_ONLY]
    assert len(notes) == 1 and "GPU" in notes[0]["widgets_values"][0], "every template explains itself in one note"
    for node in graph["nodes"]:
        node_type = node["type"]
        if node_type in FRONTEND_ONLY:
            assert not node["inputs"] and not node["outputs"]
            continue
        assert node_type in PACK.NODE_CLASS_MAPPINGS or node_type in CORE["core_node_types"], node_type
        spec = spec_of(node_type)
        declared = {i["name"]: i for i in node["inputs"]}
        assert [(o["name"], o["type"]) for o in node["outputs"]] == list(zip(spec["output_name"], spec["output"])), node_type
        values = list(node["widgets_values"])
        for name, kind, options in inputs_of(spec):
            if kind == AUTOGROW:
                check_autogrow(node, name, options["template"])
                continue
            if kind in WIDGET_TYPES and name in declared and "widget" in declared[name]:
                # a widget fed by a link: the frontend still saves a value for it, in its place
                assert declared[name]["type"] == kind and declared[name]["link"] is not None, f"{node_type}.{name}"
            if kind == "*" or kind not in WIDGET_TYPES:
                assert name in declared, f"{node_type}.{name} is missing from the node's inputs"
                assert declared[name]["type"] == kind, f"{node_type}.{name}: {declared[name]['type']} != {kind}"
                if name in spec["input"].get("required", {}):
                    assert declared[name]["link"] is not None, f"{node_type}.{name} is not connected"
                continue
            assert values, f"{node_type} has no value for widget {name}"
            check_widget(node_type, name, kind, options, values.pop(0))
            if options.get("control_after_generate"):
                assert values.pop(0) in CONTROL_VALUES, f"{node_type}.{name} control value"
            if options.get("image_upload") or options.get("video_upload"):
                assert values.pop(0) == "image", f"{node_type}.{name} upload widget"
        assert values == [], f"{node_type} has extra widget values {values}"
        known = {name for name, _, _ in inputs_of(spec)}
        assert all(i["name"].split(".")[0] in known for i in node["inputs"]), f"{node_type} has unknown inputs"

    for link_id, src, src_slot, dst, dst_slot, link_type in graph["links"]:
        out, inp = nodes[src]["outputs"][src_slot], nodes[dst]["inputs"][dst_slot]
        assert link_id in out["links"] and inp["link"] == link_id, f"link {link_id} ends disagree"
        assert out["type"] == link_type and inp["type"] in (link_type, "*"), f"link {link_id}: {out['type']} -> {inp['type']}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_masks_build(path):
    build = PACK.nodes.frame_mask.MarDiniFrameMask().build
    for node in json.loads(path.read_text())["nodes"]:
        if node["type"] == "MarDiniFrameMask":
            frames, preset, given, pattern = node["widgets_values"]
            assert build(frames, preset, given, pattern)[1] == pattern, "the saved pattern must match its preset"


def test_workflows_are_what_the_builder_writes(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_workflows", REPO / "workflows" / "build_workflows.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    monkeypatch.setattr(builder, "HERE", tmp_path)
    builder.main()
    for path in WORKFLOWS:
        assert (tmp_path / path.name).read_text() == path.read_text(), f"{path.name} is stale: run workflows/build_workflows.py"


TITLE = 30  # LiteGraph draws a node's title bar above its position
SLOT = 20  # and its link slots 20 px apart from its top, outputs on the right, inputs on the left


def boxes(graph):
    """Each node's rectangle on the canvas, title bar included: id -> (x0, y0, x1, y1)."""
    return {n["id"]: (n["pos"][0], n["pos"][1] - TITLE, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
            for n in graph["nodes"]}


def link_path(graph, link):
    """The points a link is drawn through: its output slot, its reroutes in order, its input slot."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    link_id, src, src_slot, dst, dst_slot, _ = link
    start = nodes[src]["pos"][0] + nodes[src]["size"][0], nodes[src]["pos"][1] + 14 + SLOT * src_slot
    end = nodes[dst]["pos"][0], nodes[dst]["pos"][1] + 14 + SLOT * dst_slot
    reroutes = {r["id"]: r for r in graph["extra"].get("reroutes", [])}
    parent = {e["id"]: e["parentId"] for e in graph["extra"].get("linkExtensions", [])}.get(link_id)
    chain = []
    while parent:
        chain.insert(0, tuple(reroutes[parent]["pos"]))
        parent = reroutes[parent].get("parentId")
    return [start, *chain, end]


def spline(a, b, samples=40):
    """LiteGraph's link curve from a to b: a cubic leaving and entering horizontally, handles a quarter of the distance."""
    handle = 0.25 * ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
    p = [a, (a[0] + handle, a[1]), (b[0] - handle, b[1]), b]
    for i in range(samples + 1):
        t = i / samples
        w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3)
        yield sum(wi * q[0] for wi, q in zip(w, p)), sum(wi * q[1] for wi, q in zip(w, p))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_layout_is_tidy(path):
    """What an artist sees on opening: no node (the note included) on another, nothing below Save where its
    preview grows after a run, and no link drawn behind a node other than its own two ends."""
    graph = json.loads(path.read_text())
    rects = boxes(graph)
    for a, (ax0, ay0, ax1, ay1) in rects.items():
        for b, (bx0, by0, bx1, by1) in rects.items():
            if a < b:
                assert ax1 + 10 <= bx0 or bx1 + 10 <= ax0 or ay1 + 10 <= by0 or by1 + 10 <= ay0, f"nodes {a} and {b} overlap"
    for save in (n for n in graph["nodes"] if n["type"] == "SaveAnimatedWEBP"):
        x0, _, x1, y1 = rects[save["id"]]
        assert not [i for i, (bx0, by0, bx1, _) in rects.items() if by0 >= y1 and bx0 < x1 and bx1 > x0], "a node below Save"
    for link in graph["links"]:
        points = link_path(graph, link)
        ends = {link[1], link[3]}
        for a, b in zip(points, points[1:]):
            for x, y in spline(a, b):
                behind = [i for i, (x0, y0, x1, y1) in rects.items() if i not in ends and x0 + 12 < x < x1 - 12 and y0 + 12 < y < y1 - 12]
                assert not behind, f"link {link[0]} ({link[5]}) passes behind node {behind[0]}"
