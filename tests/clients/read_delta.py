"""Read a Delta table with another engine (delta-rs' Python package, on pyarrow) and print
its version and rows as JSON: `python read_delta.py TABLE_DIR`."""

import json
import os
import sys

from deltalake import DeltaTable

table = DeltaTable(sys.argv[1])
rows = table.to_pyarrow_table().sort_by("id").to_pylist()
print(json.dumps({"version": table.version(), "rows": rows}, default=str))
sys.stdout.flush()
# deltalake's native threads can still be running when the interpreter tears down, which
# sometimes aborts the process ("terminate called without an active exception") after
# the answer is printed; leave without running those destructors.
os._exit(0)
