"""The traffic simulator: live traffic over HTTP and vectorised backfill, one behaviour model."""
