"""The offline runner for field devices, and its sync to the service.

    cli.py        `khet edge run | watch | sync`
    runner.py     captures found, analyzed once each through `khet.vision.pipeline.analyze`
    journal.py    the SQLite state in OUT/.khet-edge that survives power loss
    bundles.py    which bundle runs: checksum, format version, fp32 or INT8 from the model card
    resources.py  threads, batch size, GDAL cache and the --max-memory ceiling
    outbox.py     results waiting on disk, and the resumable, idempotent upload to the service

Imports only the core dependencies (no torch, FastAPI or SQLAlchemy): a device installs
`pip install khet` without extras.
"""
