"""An external-command simulator for campaign tests: prints one JSON object on stdout."""

from __future__ import annotations

import argparse
import json
import math

parser = argparse.ArgumentParser()
parser.add_argument("--x1", type=float, required=True)
parser.add_argument("--x2", type=float, required=True)
args = parser.parse_args()
print("solver: converged")  # chatter before the result line is fine
print(
    json.dumps({"y": math.sin(3.0 * args.x1) + math.cos(2.0 * args.x2) + 0.5 * args.x1 * args.x2})
)
