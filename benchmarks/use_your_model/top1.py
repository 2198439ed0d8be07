"""Top-1 of ``deit predict --json`` output over a folder whose parent folders name the classes.

``python benchmarks/use_your_model/top1.py PREDICTIONS.jsonl`` prints the images, those right
and the top-1 in percent, as JSON (records with an ``error`` are counted apart).
"""

import json
import sys
from pathlib import Path

right = seen = errors = 0
with open(sys.argv[1]) as lines:
    for line in lines:
        record = json.loads(line)
        if "error" in record:
            errors += 1
            continue
        seen += 1
        right += record["classes"][0] == Path(record["path"]).parent.name
print(json.dumps({"images": seen, "right": right, "top1": 100 * right / seen, "errors": errors}))
