#!/usr/bin/env python3
"""Every shell command in README.md still exists: run.sh verbs and their flags, the binaries'
subcommands and flags (asked of the built binaries' --help), files and Dockerfile targets, Nix
outputs, and the compose file (validated by docker-compose when it is installed). And what the
README shows the shell printing, it still prints: each `$ … | ./run.sh shell` example of a
```console block runs against a onebox of its own, and every line shown under it (addresses
aside; `…` skips lines) must come out, in order.

Commands are the lines of ```sh blocks and the `$ ` lines of ```console blocks. Run by
`./run.sh test` after the binaries are built; exits 1 naming each stale command or line."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/pegasus-target")) / "release"
# Commands of the outside world, and shell built-ins: nothing of ours to check.
FOREIGN = {"echo", "printf", "cat", "curl", "cd", "git", "cargo", "touch", "./result", "apt-get"}
HELP = {}


def commands(readme):
    """(line number, command) for every command in the README's shell blocks."""
    lang = None
    for n, line in enumerate(readme.splitlines(), 1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang == "sh" and line.strip() and not line.lstrip().startswith("#"):
            yield n, line
        elif lang == "console" and line.startswith("$ "):
            yield n, line[2:]


def segments(command):
    """The simple commands of a line: split at pipes and lists, comments dropped."""
    command = re.sub(r"(^|\s)#.*$", "", command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    part = []
    redirected = False
    for token in lexer:
        if token in (">", ">>", "<", "2>"):
            redirected = True
        elif redirected:
            redirected = False
        elif token in ("|", "||", "&&", ";", "&"):
            if part:
                yield part
            part = []
        else:
            part.append(token)
    if part:
        yield part


def help_of(*argv):
    if argv not in HELP:
        out = subprocess.run(argv, capture_output=True, text=True)
        HELP[argv] = out.stdout + out.stderr
    return HELP[argv]


def flags_in(args, help_text, what):
    errors = []
    for a in args:
        flag = a.split("=")[0]
        if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and not re.search(
            r"(^|[\s,\[|(])" + re.escape(flag) + r"([\s,=\]|)]|$)", help_text, re.M
        ):
            errors.append(f"{what} has no flag `{flag}`")
    return errors


def run_sh_verbs():
    text = (ROOT / "run.sh").read_text()
    case = text[text.index('case "$cmd" in') :]
    verbs = set()
    for pattern in re.findall(r"^\s{2}([\w|-]+)\)", case, re.M):
        verbs.update(pattern.split("|"))
    return verbs


def check_run_sh(args):
    if not args:
        return ["`./run.sh` needs a verb"]
    verb, rest = args[0], args[1:]
    if verb not in run_sh_verbs():
        return [f"run.sh has no verb `{verb}`"]
    if "onebox" in verb:
        return flags_in(rest, help_of(str(BIN / "pegasus_onebox"), verb, "--help"), f"`run.sh {verb}`")
    if verb == "shell":
        return flags_in(rest, help_of(str(BIN / "pegasus_shell"), "--help"), "`run.sh shell`")
    if verb == "bench":
        return flags_in(rest, help_of(str(BIN / "pegasus_bench"), "--help"), "`run.sh bench`")
    if verb == "configcheck":
        return check_configcheck(rest)
    if verb == "setup":
        groups = set(re.findall(r"^PACKAGES_(\w+)=", (ROOT / "run.sh").read_text(), re.M))
        return [f"run.sh setup has no group `{g}`" for g in rest if not g.startswith("-") and g not in groups]
    return []


def check_configcheck(args):
    subcommands = {"check", "facts", "render", "rules", "keys", "explain"}
    sub = args[0] if args and args[0] in subcommands else "check"
    return flags_in(args, help_of(str(BIN / "configcheck"), sub, "--help"), f"`configcheck {sub}`")


def check_pegasus_server(args):
    if not args:
        return []
    if args[0] in ("healthcheck", "clean", "--version"):
        return []
    errors = []
    if "-app_list" in args:
        roles = args[args.index("-app_list") + 1]
        errors += [f"pegasus_server has no role `{r}`" for r in re.split("[,;]", roles) if r not in ("meta", "replica", "collector")]
    return errors


def check_docker(args):
    if args[:1] == ["compose"]:
        return check_compose(args[1:])
    if args[:1] == ["build"]:
        errors = []
        if "-f" in args:
            dockerfile = ROOT / args[args.index("-f") + 1]
            if not dockerfile.exists():
                return [f"no file `{dockerfile.relative_to(ROOT)}`"]
            if "--target" in args:
                target = args[args.index("--target") + 1]
                if not re.search(rf"^FROM .* AS {re.escape(target)}$", dockerfile.read_text(), re.M):
                    errors.append(f"{dockerfile.name} has no stage `{target}`")
        return errors
    return []


def check_compose(args):
    if not (ROOT / "docker-compose.yml").exists():
        return ["no docker-compose.yml at the root"]
    known = {"up", "down", "ps", "build", "logs", "restart", "stop", "start", "config", "exec"}
    sub = next((a for a in args if not a.startswith("-")), None)
    if sub not in known:
        return [f"unknown compose command `{sub}`"]
    if subprocess.run(["sh", "-c", "command -v docker-compose"], capture_output=True).returncode == 0:
        out = subprocess.run(
            ["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, capture_output=True, text=True
        )
        if out.returncode != 0:
            return [f"docker-compose.yml does not validate: {out.stderr.strip()}"]
    return []


def check_nix(args):
    flake = (ROOT / "flake.nix").read_text() + (ROOT / "nix/default.nix").read_text()
    errors = []
    for a in args:
        if a.startswith(".#"):
            name = a[2:]
            if not re.search(rf"\b{re.escape(name)}\b", flake):
                errors.append(f"the flake has no output `{name}`")
    sub = args[0] if args else ""
    if sub not in ("build", "run", "flake", "develop"):
        errors.append(f"nix `{sub}` is not a command the README should use")
    return errors


def check(words):
    # `VAR=value cmd …`: the command is after the assignments.
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        words = words[1:]
    if not words:
        return []
    cmd, args = words[0], words[1:]
    name = Path(cmd).name
    if cmd in FOREIGN or name in FOREIGN:
        return []
    if cmd == "./run.sh":
        return check_run_sh(args)
    if name == "configcheck":
        return check_configcheck(args)
    if name == "pegasus_server":
        return check_pegasus_server(args)
    if name in ("pegasus_shell", "pegasus_bench", "pegasus_onebox"):
        sub = [args[0]] if name == "pegasus_onebox" and args else []
        return flags_in(args, help_of(str(BIN / name), *sub, "--help"), f"`{name}`")
    if name == "pegasus_cluster":
        verbs = {"template", "check", "deploy", "start", "stop", "restart", "upgrade", "rollback", "scale-out", "scale-in", "resume", "abort", "display", "destroy"}
        if not args or args[0] not in verbs:
            return [f"pegasus_cluster has no verb `{args[0] if args else ''}`"]
        return flags_in(args[1:], help_of(str(BIN / name), args[0], "--help"), f"`pegasus_cluster {args[0]}`")
    if cmd == "docker":
        return check_docker(args)
    if cmd == "docker-compose":
        return check_compose(args)
    if cmd == "nix":
        return check_nix(args)
    if "/" in cmd:
        return [] if (ROOT / cmd).exists() else [f"no file `{cmd}`"]
    return [f"`{cmd}`: not a command this check knows; teach tests/readme.py about it"]


def examples(readme):
    """(line number, command, shown lines) for each `$ ` command of the README's ```console
    blocks that pipes lines into the shell: what the README shows it printing."""
    lang, current = None, None
    for n, line in enumerate(readme.splitlines(), 1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            if current:
                yield current
                current = None
            lang = None if lang is not None else fence.group(1)
            continue
        if lang != "console":
            continue
        if line.startswith("$ "):
            if current:
                yield current
            command = line[2:]
            current = (n, command, []) if "| ./run.sh shell" in command else None
        elif current:
            current[2].append(line)
    if current:
        yield current


ADDRESS = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}:\d+\b")


def shown_in(shown, printed):
    """The README's shown lines that the printed output lacks, in order (`…` skips any lines;
    spacing aside; addresses match any address and a partition's ballot any ballot, since which
    node is primary of what, and after how many changes, varies)."""
    def norm(line):
        line = " ".join(ADDRESS.sub("ADDR", line).split())
        # A partition's row (`pidx ballot n/m primary secondaries`): its ballot varies too.
        return re.sub(r"^(\d+) \d+ (\d+/\d+ )", r"\1 BALLOT \2", line)

    lines = [norm(line) for line in printed.splitlines()]
    missing, at = [], 0
    for want in shown:
        if want.strip() == "…":
            continue
        w = norm(want)
        while at < len(lines) and lines[at] != w:
            at += 1
        if at == len(lines):
            missing.append(want)
            at = 0
        else:
            at += 1
    return missing


def check_examples(readme):
    """Runs the README's shell examples against a onebox of its own (the default ports, as the
    README's commands assume) and reports each shown line the shell no longer prints."""
    found = list(examples(readme))
    if not found:
        return 0, []
    work = tempfile.mkdtemp()
    onebox = [str(BIN / "pegasus_onebox"), "--root", f"{work}/onebox"]
    failures = []
    try:
        up = subprocess.run(onebox + ["start_onebox", "--wait_healthy"], capture_output=True, text=True)
        if up.returncode != 0:
            return len(found), [f"README examples: the onebox did not start: {up.stdout}{up.stderr}"]
        for n, command, shown in found:
            run = command.replace("./run.sh shell", shlex.quote(str(BIN / "pegasus_shell")))
            out = subprocess.run(["bash", "-c", run], capture_output=True, text=True, cwd=ROOT, timeout=120)
            for line in shown_in(shown, out.stdout + out.stderr):
                failures.append(f"README.md:{n}: `{command}` no longer prints `{line}`; it printed:\n{out.stdout}{out.stderr}")
    finally:
        subprocess.run(onebox + ["clear_onebox"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return len(found), failures


def main():
    readme = (ROOT / "README.md").read_text()
    failures, checked = [], 0
    for n, line in commands(readme):
        for words in segments(line):
            checked += 1
            failures += [f"README.md:{n}: {e}\n    {line}" for e in check(words)]
    ran, stale = check_examples(readme)
    failures += stale
    for f in failures:
        print(f, file=sys.stderr)
    print(f"readme: {checked} commands checked, {ran} shell examples run, {len(failures)} stale")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
