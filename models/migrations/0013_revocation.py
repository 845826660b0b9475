"""Token versions and agent lifecycle (issue 22, part 4): filled by that change. Written by hand."""

from tortoise import migrations


class Migration(migrations.Migration):
    dependencies = [("models", "0012_verified_contacts")]

    initial = False

    operations: list = []
