"""HNSW expression index on the first 32 rotated components of each template (level 1 of the
staged search, recognition/search.py).

The expression must match `TemplateTable.prefix_expr(d_1, half)` exactly, so this index serves
FACEWEB_SEARCH_LEVELS whose first level is 32 with FACEWEB_SEARCH_HALFVEC off. Another d_1 needs
its own index: `manage.py refit_basis --ensure-index` creates the one the settings ask for.
"""

from django.db import migrations

INDEX = "recognition_template_prefix32_hnsw"


class Migration(migrations.Migration):
    dependencies = [("recognition", "0001_initial")]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON recognition_template USING hnsw "
            "((subvector(vector, 1, 32)::vector(32)) vector_l2_ops) "
            "WITH (m = 16, ef_construction = 64)",
            reverse_sql=f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]
