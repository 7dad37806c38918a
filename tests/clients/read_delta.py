"""Read a Delta table with another engine (delta-rs' Python package, on pyarrow) and print
its version and rows as JSON: `python read_delta.py TABLE_DIR`."""

import json
import sys

from deltalake import DeltaTable

table = DeltaTable(sys.argv[1])
rows = table.to_pyarrow_table().sort_by("id").to_pylist()
print(json.dumps({"version": table.version(), "rows": rows}, default=str))
