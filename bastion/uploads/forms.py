"""Upload forms; the file field only checks presence, the service decides the rest."""

from __future__ import annotations

from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField

from bastion.form_input import BastionForm

# A hint for the browser's file picker only; the content decides what is accepted.
ACCEPT = "image/jpeg,image/png,image/gif,image/webp"


class ImageUploadForm(BastionForm):  # type: ignore[misc]
    image = FileField(
        "Image",
        validators=[FileRequired(message="Choose an image file to upload.")],
        description="JPEG, PNG, GIF or WebP. Photos are re-encoded and their metadata removed.",
        render_kw={"accept": ACCEPT},
    )
    next = HiddenField()
