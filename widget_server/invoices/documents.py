"""The document registry: every rendered file in the patient's folder, never overwritten.

Folder per patient = per deal: `<root>/portal-<id>/deal-<deal id>/<number>-v<N>.pdf`. A row records deal,
invoice, version, template version, sha256, size, author and time. Regeneration renders the frozen
snapshot again as version N+1; version N stays on disk and is still served with its checksum.
`verify_documents` re-hashes every file and names any that changed or vanished.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Invoice, InvoiceDocument, Portal
from .errors import InvoiceConflict, InvoiceNotFound
from .render import data_uri, render_invoice_pdf

__all__ = [
    "Problem",
    "clinic_images",
    "document_path",
    "generate_document",
    "read_document",
    "verify_documents",
]

_SAFE = re.compile(r"[^0-9A-Za-zА-Яа-яЁё._-]+")


def _safe(part: str) -> str:
    return _SAFE.sub("_", part)[:100] or "_"


def document_path(root: Path, portal_id: int, deal_id: str, file_name: str) -> Path:
    return root / f"portal-{portal_id}" / f"deal-{_safe(deal_id)}" / file_name


def clinic_images(portal: Portal) -> dict[str, str]:
    """Logo, signature and stamp from the portal's invoice settings (data: URIs or base64 PNG)."""
    settings = (portal.settings or {}).get("invoices") or {}
    images = {}
    for name in ("logo", "signature", "stamp"):
        value = settings.get(name)
        if isinstance(value, str) and value:
            images[name] = value if value.startswith("data:") else data_uri(base64.b64decode(value))
    return images


def generate_document(
    session: Session, portal: Portal, invoice: Invoice, author: str, root: Path
) -> InvoiceDocument:
    """Render the invoice's frozen snapshot as the next version and register it."""
    if invoice.snapshot is None:
        raise InvoiceConflict("status", "a draft has no document; issue it first")
    pdf, version_of_template = render_invoice_pdf(invoice.snapshot, clinic_images(portal))
    # The invoice row is locked by the caller's transaction, so versions do not race.
    latest = session.scalar(
        select(func.max(InvoiceDocument.version)).where(InvoiceDocument.invoice_id == invoice.id)
    )
    version = int(latest or 0) + 1
    file_name = f"{_safe(invoice.number or str(invoice.id))}-v{version}.pdf"
    path = document_path(root, portal.id, invoice.deal_id, file_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as handle:  # "x": an existing file is never overwritten
        handle.write(pdf)
    document = InvoiceDocument(
        portal_id=portal.id,
        deal_id=invoice.deal_id,
        invoice_id=invoice.id,
        version=version,
        file_name=file_name,
        path=str(path.relative_to(root)),
        template_version=version_of_template,
        sha256=hashlib.sha256(pdf).hexdigest(),
        size=len(pdf),
        author=author,
    )
    session.add(document)
    session.flush()
    return document


def read_document(
    session: Session, portal_id: int, invoice_id: int, version: int | None, root: Path
) -> tuple[InvoiceDocument, bytes]:
    query = select(InvoiceDocument).where(
        InvoiceDocument.portal_id == portal_id, InvoiceDocument.invoice_id == invoice_id
    )
    if version is not None:
        query = query.where(InvoiceDocument.version == version)
    document = session.scalar(query.order_by(InvoiceDocument.version.desc()).limit(1))
    if document is None:
        raise InvoiceNotFound("version", "no such document version" if version else "no document yet")
    content = (root / document.path).read_bytes()
    if hashlib.sha256(content).hexdigest() != document.sha256:
        raise InvoiceConflict("version", f"{document.file_name} changed on disk since it was registered")
    return document, content


@dataclass(frozen=True)
class Problem:
    document_id: int
    path: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "path": self.path, "reason": self.reason}


def verify_documents(session: Session, root: Path) -> tuple[int, list[Problem]]:
    """(files checked, problems): every registered file re-hashed against its recorded sha256."""
    problems = []
    checked = 0
    for document in session.scalars(select(InvoiceDocument).order_by(InvoiceDocument.id)):
        checked += 1
        path = root / document.path
        if not path.exists():
            problems.append(Problem(document.id, document.path, "missing"))
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != document.sha256:
            problems.append(Problem(document.id, document.path, "changed: sha256 differs"))
    return checked, problems
