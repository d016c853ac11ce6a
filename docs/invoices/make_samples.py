"""Render one invoice of each kind (bench/invoices.py's seed-001-shaped snapshots) to PDF and to PNG with
pdftoppm, for checking the layout by eye:  .venv/bin/python docs/invoices/make_samples.py"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "bench"))
sys.path.insert(0, str(HERE.parent.parent))

import invoices as samples  # noqa: E402  (bench/invoices.py)

from widget_server.invoices.render import render_invoice_pdf  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db, portal_id = samples._database(f"sqlite:///{tmp}/samples.sqlite3")
        snapshots = samples.snapshots(db, portal_id)
        db.dispose()
        for kind, snapshot in snapshots.items():
            pdf, _version = render_invoice_pdf(snapshot)
            path = Path(tmp) / f"{kind}.pdf"
            path.write_bytes(pdf)
            subprocess.run(
                ["pdftoppm", "-png", "-r", "70", "-singlefile", str(path), str(HERE / f"invoice_{kind}")],
                check=True,
            )
            print(HERE / f"invoice_{kind}.png")


if __name__ == "__main__":
    main()
