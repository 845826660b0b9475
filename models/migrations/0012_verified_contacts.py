"""Verified contacts (issue 22, part 1): filled by that change. Written by hand."""

from tortoise import migrations


class Migration(migrations.Migration):
    dependencies = [("models", "0011_campaigns")]

    initial = False

    operations: list = []
