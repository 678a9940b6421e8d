#!/usr/bin/env python3
"""What a plugin's language costs: for the three example plugins (Rust
disk-guard, Python http-check, JavaScript cache-clean), the component's
size, the first run after it is installed (opsd compiles it), later runs
from a fresh process (compiled code read from the disk cache) and runs in a
daemon (compiled code in memory), beside fork/exec of a shell command that
does the same chore.

    python3 bench/plugin_languages.py            # RUNS=10
    RUNS=30 python3 bench/plugin_languages.py

Builds opsd (release) and the examples with the pinned tools (PyPI's
componentize-py, npm's ComponentizeJS) under target/opsd-tools first.
"""

import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("RUNS", "10"))
TOOLS = ROOT / "target" / "opsd-tools"
COMPONENTIZE_PY = "componentize-py==0.25.1"
NODE_TOOLS = ["@bytecodealliance/componentize-js@0.23.0", "rolldown@1.3.2"]


def sh(*args, cwd=None, quiet=True):
    out = subprocess.run(args, cwd=cwd, capture_output=quiet, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def tools():
    venv = TOOLS / "py"
    if not (venv / "bin" / "componentize-py").exists():
        sh(sys.executable, "-m", "venv", venv)
        sh(venv / "bin" / "pip", "install", "-q", COMPONENTIZE_PY)
    node = TOOLS / "node"
    if not (node / "node_modules" / "@bytecodealliance" / "componentize-js").exists():
        node.mkdir(parents=True, exist_ok=True)
        sh("npm", "install", "--no-audit", "--no-fund", "--prefix", node, *NODE_TOOLS)
    return venv / "bin" / "componentize-py", node / "node_modules"


def build(work: Path):
    print("building opsd (release) and the examples...", file=sys.stderr)
    sh("cargo", "build", "--release", "-q", cwd=ROOT)
    sh("cargo", "build", "-q", "--profile", "plugin", "--target", "wasm32-wasip2",
       "--target-dir", ROOT / "target" / "opsd-wasm", "-p", "opsd-example-disk-guard", cwd=ROOT)
    componentize_py, node_modules = tools()
    src = work / "src"
    shutil.copytree(ROOT / "examples" / "plugins", src, symlinks=False,
                    ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
    out = work / "wasm"
    out.mkdir()
    sh(componentize_py, "-d", "wit", "-w", "http-check", "componentize", "app",
       "-p", "http-check", "-o", out / "http-check.wasm", cwd=src)
    (src / "cache-clean" / "node_modules").symlink_to(node_modules)
    sh("node", "build.mjs", "plugin.js", "../wit", "cache-clean", out / "cache-clean.wasm",
       cwd=src / "cache-clean")
    shutil.copy(ROOT / "target" / "opsd-wasm" / "wasm32-wasip2" / "plugin" /
                "opsd_example_disk_guard.wasm", out / "disk-guard.wasm")
    return out


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def config(work: Path, origin: str) -> Path:
    cache = work / "cache"
    cache.mkdir()
    for i in range(200):
        (cache / f"f{i}").write_bytes(b"x" * 1024)
    text = f"""data_dir = "data"
plugin_dir = "plugins"

[[job]]
name = "disk-guard"
plugin = "disk-guard"
schedule = "@yearly"

[[job]]
name = "http-check"
plugin = "http-check"
schedule = "@yearly"
[job.grants]
net = ["{origin}"]
[job.config]
url = "{origin}/health"

[[job]]
name = "cache-clean"
plugin = "cache-clean"
schedule = "@yearly"
[job.grants]
fs = [{{ host = "{cache}", guest = "/cache", access = "rw" }}]
[job.config]
dir = "/cache"
max_age = "30d"
"""
    path = work / "opsd.toml"
    path.write_text(text)
    return path


def opsd_run(opsd, cfg, job):
    """(wall ms of the CLI process, the run record)."""
    t = time.perf_counter()
    out = subprocess.run([opsd, "--config", cfg, "run", job, "--json"], capture_output=True, text=True)
    wall = (time.perf_counter() - t) * 1000
    if out.returncode not in (0, 1):
        sys.exit(f"opsd run {job}: {out.stderr}")
    rec = json.loads(out.stdout)
    if rec["status"] not in ("ok", "warning"):
        sys.exit(f"opsd run {job}: {rec['status']}: {rec.get('error')}")
    return wall, rec


def shell_equivalent(job, origin, cache):
    return {
        "disk-guard": ["sh", "-c", "df -P / >/dev/null"],
        "http-check": ["sh", "-c", f"curl -fsS -o /dev/null {origin}/health"],
        "cache-clean": ["sh", "-c", f"find {cache} -type f -mtime +30 -delete"],
    }[job]


def main():
    work = Path(tempfile.mkdtemp(prefix="opsd-bench-lang."))
    try:
        wasm = build(work)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        cfg = config(work, origin)
        opsd = ROOT / "target" / "release" / "opsd"
        plugins = work / "plugins"
        plugins.mkdir()
        rows = []
        for job, lang in [("disk-guard", "Rust"), ("http-check", "Python"), ("cache-clean", "JavaScript")]:
            shutil.copy(wasm / f"{job}.wasm", plugins / f"{job}.wasm")
            size = (wasm / f"{job}.wasm").stat().st_size
            wall, rec = opsd_run(opsd, cfg, job)
            assert rec["plugin_load"]["source"] == "compiled", rec
            cold = (wall, rec["plugin_load"]["ms"], rec["duration_ms"])
            warm = [opsd_run(opsd, cfg, job) for _ in range(RUNS)]
            assert all(r["plugin_load"]["source"] == "disk-cache" for _, r in warm)
            shell = []
            for _ in range(RUNS):
                t = time.perf_counter()
                subprocess.run(shell_equivalent(job, origin, work / "cache"), check=True)
                shell.append((time.perf_counter() - t) * 1000)
            rows.append([job, lang, size, cold, warm, shell])
        # In a daemon: compiled code stays in memory between runs.
        daemon = subprocess.Popen([opsd, "--config", cfg, "daemon"], stderr=subprocess.DEVNULL)
        try:
            sock = work / "data" / "opsd.sock"
            for _ in range(600):
                if sock.exists():
                    break
                time.sleep(0.1)
            for row in rows:
                opsd_run(opsd, cfg, row[0])  # loads it into memory
                mem = [opsd_run(opsd, cfg, row[0]) for _ in range(RUNS)]
                sources = {r["plugin_load"]["source"] for _, r in mem}
                assert sources == {"memory"}, (row[0], sources)
                row.append(mem)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)

        med = statistics.median
        print(f"\nopsd {sh(opsd, '--version').strip()}, {RUNS} runs each, medians; "
              f"{os.cpu_count()} CPUs\n")
        print("| plugin | language | .wasm | first run: compile / run / CLI wall | "
              "later run, new process: cache load / run / CLI wall | in the daemon: run / CLI wall | "
              "shell equivalent (fork/exec) |")
        print("|---|---|---:|---|---|---|---:|")
        for job, lang, size, cold, warm, shell, mem in rows:
            w_load = med(r["plugin_load"]["ms"] for _, r in warm)
            w_run = med(r["duration_ms"] for _, r in warm)
            w_wall = med(w for w, _ in warm)
            m_run = med(r["duration_ms"] for _, r in mem)
            m_wall = med(w for w, _ in mem)
            print(f"| {job} | {lang} | {size / 1e6:.2f} MB | {cold[1]:.0f} ms / {cold[2]} ms / {cold[0]:.0f} ms "
                  f"| {w_load:.1f} ms / {w_run:.0f} ms / {w_wall:.0f} ms | {m_run:.0f} ms / {m_wall:.0f} ms "
                  f"| {med(shell):.1f} ms |")
        print("\n'run' is the run record's duration_ms (instantiate + the chore); "
              "'CLI wall' is the whole `opsd run` process, store open to exit.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
