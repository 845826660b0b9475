"""Erasure (issue 22, part 5): filled by that change. Written by hand."""

from tortoise import migrations


class Migration(migrations.Migration):
    dependencies = [("models", "0013_revocation")]

    initial = False

    operations: list = []
