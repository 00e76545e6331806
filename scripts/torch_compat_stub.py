"""Stub the torch-sys op wrappers that a compiler rejected (scripts/torch-compat.sh).

  python3 torch_compat_stub.py torch_api_generated.cpp compiler.log TORCH_VERSION

Each `void atg_NAME(...) { ... }` of the generated file that holds a line the log
reports an error on (or a "required from here" note) gets the body
`PROTECT(throw std::runtime_error("atg_NAME: not in libtorch X");)`: the C symbol stays,
so the Rust bindings link, and calling the op raises a Torch error instead. Prints the
stubbed wrappers' names, one per line; edits the file in place.
"""

import re
import sys


def main():
    cpp, log, version = sys.argv[1:4]
    name = cpp.rsplit("/", 1)[-1]
    pattern = re.compile(re.escape(name) + r":(\d+):\d+:\s+(error|required from)")
    bad = set()
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = pattern.search(line)
            if m:
                bad.add(int(m.group(1)))
    with open(cpp, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # Function spans: a line starting `void atg_` or a return type at column 0 with
    # `atg_` ... up to the next line that is exactly "}".
    spans = []
    start = None
    for i, line in enumerate(lines, start=1):
        if start is None and re.match(r"^\w[\w\s\*]*\batg_\w+\(.*\)\s*\{\s*$", line):
            start = i
        elif start is not None and line == "}":
            spans.append((start, i))
            start = None
    stubbed = []
    for s, e in reversed(spans):
        if any(s <= b <= e for b in bad):
            fn = re.search(r"\b(atg_\w+)\(", lines[s - 1]).group(1)
            body = f'  PROTECT(throw std::runtime_error("{fn}: not in libtorch {version}");)'
            # Non-void wrappers end with a top-level `return 0;` after PROTECT: keep it.
            tail = [l for l in lines[s : e - 1] if re.match(r"^  return .*;$", l)]
            lines[s : e - 1] = [body] + tail
            stubbed.append(fn)
    with open(cpp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    for fn in reversed(stubbed):
        print(fn)


if __name__ == "__main__":
    main()
