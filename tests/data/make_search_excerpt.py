"""Cut a `<model>_search.json` (3 MB on the shipped model) to `search_excerpt.json`: the first 12 tagged and 8
untagged trials, their nodes' tags, the first 4 cells and claims. A real record, small enough for tests/data.

    arithlens search --out DIR --quiet
    python tests/data/make_search_excerpt.py DIR/mix_d6_l3_h4_t10K_s372001_search.json

(The file here was cut from the search file of an `arithlens analyze --out DIR` run: the same record.)
"""

import json
import sys
from pathlib import Path

record = json.loads(Path(sys.argv[1]).read_text())
record["trials"] = ([t for t in record["trials"] if t["tagged"]][:12]
                    + [t for t in record["trials"] if not t["tagged"]][:8])
names = {t["node"] for t in record["trials"]}
record["tags"] = {k: v for k, v in record["tags"].items() if k in names}
record["cells"], record["claims"] = record["cells"][:4], record["claims"][:4]
(Path(__file__).parent / "search_excerpt.json").write_text(json.dumps(record, indent=1) + "\n")
