"""Level 1 of the staged search moves to the first 48 rotated components (m 24,
ef_construction 128). In the 1M-template benchmark set (BENCHMARKS.md, "search"), for 150 real
probes the person nearest in full space always had a template among the 10 nearest
48-component prefixes, while with 32 components 1 probe in 150 needed more than 200. The expression must match `TemplateTable.prefix_expr(48, False)`.
"""

from django.db import migrations

OLD = "recognition_template_prefix32_hnsw"
NEW = "recognition_template_prefix48_hnsw"


class Migration(migrations.Migration):
    dependencies = [("recognition", "0002_template_prefix_hnsw")]

    operations = [
        migrations.RunSQL(
            f"DROP INDEX IF EXISTS {OLD}",
            reverse_sql=f"CREATE INDEX IF NOT EXISTS {OLD} ON recognition_template USING hnsw "
            "((subvector(vector, 1, 32)::vector(32)) vector_l2_ops) "
            "WITH (m = 16, ef_construction = 64)",
        ),
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS {NEW} ON recognition_template USING hnsw "
            "((subvector(vector, 1, 48)::vector(48)) vector_l2_ops) "
            "WITH (m = 24, ef_construction = 128)",
            reverse_sql=f"DROP INDEX IF EXISTS {NEW}",
        ),
    ]
