"""The project's held-out split of the shared clips: whole files, never trained on, used for every quality figure.

Segments of one file are alike (same camera, scene, encoder), so the split is by file. The six
cover fast cuts (bikes), a classic test sequence, hand motion, cars seen from above, old film and a
dark scene; `[data] held_out = true` in a stage config leaves them out of training and
`eval --split held-out` scores only them.
"""
HELD_OUT_FILES = frozenset({
    "bikes.mp4",
    "carphone_pristine.mp4",
    "intel_asl_book.mkv",
    "intel_car-detection.mp4",
    "mdn_friday.mp4",
    "torchcodec_nasa_13013.mp4",
})
