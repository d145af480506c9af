#!/usr/bin/env python3
"""tests/systemd/test_unit.py — the installed service files, checked with the real tools.

  test_unit.py install  BUILD SOURCE   cmake --install into a temp prefix (and DESTDIR + /usr):
                                       every file in place, paths in the unit right, an edited
                                       sbertd.conf kept, sysusers/tmpfiles accepted by systemd
  test_unit.py verify   BUILD SOURCE   systemd-analyze verify on the installed units, man pages
                                       checked through MANPATH; any warning fails
  test_unit.py security BUILD SOURCE   systemd-analyze security --offline exposure <= 2.0
                                       (sbertd.service) and <= 1.0 (sbertd-backup.service)
  test_unit.py mdwe     BUILD SOURCE   MemoryDenyWriteExecute=yes is safe: no library sbertd
                                       loads asks for an executable stack or has text
                                       relocations, and sbert-encode runs under the kernel's
                                       PR_SET_MDWE (where the kernel has it: Linux >= 6.3)

Exits non-zero with a message per failed check. Needs cmake, systemd (systemd-analyze,
systemd-sysusers, systemd-tmpfiles), man-db, binutils: scripts/setup.sh installs them.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)
    return cond


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def pkg_var(name):
    r = run(["pkg-config", "--variable=" + name, "systemd"])
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit("pkg-config systemd has no %s" % name)
    return r.stdout.strip()


def install(build, prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    r = run(["cmake", "--install", build, "--prefix", prefix], env=env)
    if r.returncode != 0:
        sys.exit("cmake --install failed:\n" + r.stdout + r.stderr)
    return r.stdout


def exec_start(unit_path):
    with open(unit_path) as f:
        for line in f:
            if line.startswith("ExecStart="):
                return line[len("ExecStart="):].strip()
    return None


def layout(root, prefix, unitdir, sysusersdir, tmpfilesdir, confdir):
    """The files an install must produce, as (path under root, executable?)."""
    p = root + prefix
    return [
        (p + "/sbin/sbertd", True),
        (p + "/bin/sbertctl", True),
        (p + "/bin/sbertctl-files", True),
        (p + "/bin/sbert-encode", True),
        (root + unitdir + "/sbertd.service", False),
        (root + unitdir + "/sbertd-backup.service", False),
        (root + unitdir + "/sbertd-backup.timer", False),
        (root + unitdir + "/sbertd.socket", False),
        (root + sysusersdir + "/sbertd.conf", False),
        (root + tmpfilesdir + "/sbertd.conf", False),
        (root + confdir + "/sbertd.conf", False),
        (p + "/share/man/man1/sbertctl.1", False),
        (p + "/share/man/man5/sbertd.conf.5", False),
        (p + "/share/man/man8/sbertd.8", False),
    ]


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_layout(files, source, unit, want_exec, sysusers, tmpfiles, conf):
    for path, executable in files:
        if check(os.path.isfile(path), "not installed: " + path) and executable:
            check(os.access(path, os.X_OK), "not executable: " + path)
    if os.path.isfile(unit):
        check(exec_start(unit) == want_exec, "ExecStart=%r, want %r" % (exec_start(unit), want_exec))
        with open(unit) as f:
            check(not re.search(r"@[A-Z_]+@", f.read()), "unsubstituted @VAR@ left in " + unit)
    backup = os.path.join(os.path.dirname(unit), "sbertd-backup.service")
    if os.path.isfile(backup):
        # the sbertctl installed beside sbertd: same prefix, bin/ instead of sbin/
        ctl = want_exec.split()[0].replace("/sbin/sbertd", "/bin/sbertctl")
        want = ctl + " backup --rotate --keep ${SBERTD_BACKUP_KEEP} /var/backups/sbertd"
        check(exec_start(backup) == want, "backup ExecStart=%r, want %r" % (exec_start(backup), want))
        with open(backup) as f:
            check(not re.search(r"@[A-Z_]+@", f.read()), "unsubstituted @VAR@ left in " + backup)
    example = os.path.join(source, "docs/sbertd.conf.example")
    for got, want in ((sysusers, "systemd/sbertd.sysusers"), (tmpfiles, "systemd/sbertd.tmpfiles"),
                      (conf, "docs/sbertd.conf.example")):
        if os.path.isfile(got):
            check(same_file(got, os.path.join(source, want)), got + " differs from " + want)
    if os.path.isfile(example):
        with open(example) as f:
            active = [l for l in f if l.strip() and not l.lstrip().startswith("#")]
        check(not active, "the installed default sbertd.conf must be all comments; active lines: %r"
              % active[:3])


def mode_install(build, source):
    tmp = tempfile.mkdtemp(prefix="sbertd-install-")
    try:
        # 1. A private prefix: everything under it, the unit pointing into it.
        p = tmp + "/p"
        install(build, p)
        files = layout("", p, p + "/lib/systemd/system", p + "/lib/sysusers.d",
                       p + "/lib/tmpfiles.d", p + "/etc/sbertd")
        check_layout(files, source, p + "/lib/systemd/system/sbertd.service",
                     "%s/sbin/sbertd --config %s/etc/sbertd/sbertd.conf" % (p, p),
                     p + "/lib/sysusers.d/sbertd.conf", p + "/lib/tmpfiles.d/sbertd.conf",
                     p + "/etc/sbertd/sbertd.conf")

        # 2. Re-install over an edited config: the administrator's file stays, the new default
        #    lands beside it.
        conf = p + "/etc/sbertd/sbertd.conf"
        if os.path.isfile(conf):
            with open(conf, "a") as f:
                f.write("log_level = debug\n")
            with open(conf) as f:
                edited = f.read()
            install(build, p)
            with open(conf) as f:
                check(f.read() == edited, "cmake --install overwrote an edited sbertd.conf")
            check(os.path.isfile(conf + ".dist") and
                  same_file(conf + ".dist", os.path.join(source, "docs/sbertd.conf.example")),
                  "new defaults not installed as sbertd.conf.dist")

        # 3. Prefix /usr under DESTDIR, as a package build does: systemd's own directories, /etc.
        d = tmp + "/destdir"
        install(build, "/usr", destdir=d)
        unitdir, sysusersdir, tmpfilesdir = (pkg_var("systemdsystemunitdir"), pkg_var("sysusersdir"),
                                             pkg_var("tmpfilesdir"))
        files = layout(d, "/usr", unitdir, sysusersdir, tmpfilesdir, "/etc/sbertd")
        check_layout(files, source, d + unitdir + "/sbertd.service",
                     "/usr/sbin/sbertd --config /etc/sbertd/sbertd.conf",
                     d + sysusersdir + "/sbertd.conf", d + tmpfilesdir + "/sbertd.conf",
                     d + "/etc/sbertd/sbertd.conf")
        stray = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs
                 if not (r.startswith(d + "/usr") or r.startswith(d + "/etc") or
                         r.startswith(d + unitdir))]
        check(not stray, "files outside /usr, /etc and the unit dir: %r" % stray)

        # 4. systemd's own tools accept the sysusers and tmpfiles files: sysusers creates the
        #    user and group in the DESTDIR root, tmpfiles then creates the directories there.
        os.makedirs(d + "/etc", exist_ok=True)
        r = run(["systemd-sysusers", "--root=" + d])
        check(r.returncode == 0, "systemd-sysusers: rc %d: %s" % (r.returncode, r.stderr))
        passwd = open(d + "/etc/passwd").read() if os.path.exists(d + "/etc/passwd") else ""
        group = open(d + "/etc/group").read() if os.path.exists(d + "/etc/group") else ""
        check(re.search(r"^sbertd:x:\d+:\d+:sbertd semantic search daemon:/var/lib/sbertd:", passwd, re.M),
              "systemd-sysusers made no sbertd user: %r" % passwd)
        check(re.search(r"^sbertd:x:\d+:", group, re.M), "systemd-sysusers made no sbertd group")
        r = run(["systemd-tmpfiles", "--root=" + d, "--create", "sbertd.conf"])
        if os.geteuid() == 0:
            check(r.returncode == 0 and not r.stderr.strip(),
                  "systemd-tmpfiles: rc %d: %s" % (r.returncode, r.stderr))
        else:
            check(not re.search(r"(?i)syntax|unknown|invalid", r.stderr), "systemd-tmpfiles: " + r.stderr)
        for sub in ("/var/lib/sbertd", "/var/backups/sbertd"):
            if check(os.path.isdir(d + sub), "systemd-tmpfiles did not create " + sub):
                check(oct(os.stat(d + sub).st_mode & 0o777) == "0o750", sub + " is not mode 0750")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def installed_unit(build, tmp):
    p = tmp + "/p"
    install(build, p)
    return p, p + "/lib/systemd/system/sbertd.service"


def mode_verify(build, source):
    tmp = tempfile.mkdtemp(prefix="sbertd-verify-")
    try:
        p, unit = installed_unit(build, tmp)
        env = dict(os.environ, MANPATH=p + "/share/man", SYSTEMD_LOG_LEVEL="info")
        # --man=yes runs `man` for every Documentation=man: entry: our installed pages must open.
        unitdir = os.path.dirname(unit)
        units = [unit, unitdir + "/sbertd-backup.service", unitdir + "/sbertd-backup.timer",
                 unitdir + "/sbertd.socket"]
        r = run(["systemd-analyze", "verify", "--man=yes"] + units, env=env)
        print(r.stdout + r.stderr, file=sys.stderr)
        check(r.returncode == 0, "systemd-analyze verify exit %d" % r.returncode)
        check(not r.stderr.strip() and not r.stdout.strip(),
              "systemd-analyze verify printed warnings:\n" + r.stdout + r.stderr)
        # The check is real: without our man pages the same command fails.
        r = run(["systemd-analyze", "verify", "--man=yes", unit], env=dict(env, MANPATH=tmp + "/none"))
        check(r.returncode != 0, "systemd-analyze verify passed with no man pages")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mode_security(build, source):
    tmp = tempfile.mkdtemp(prefix="sbertd-security-")
    try:
        _, unit = installed_unit(build, tmp)
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit])
        print(r.stdout, file=sys.stderr)
        m = re.search(r"Overall exposure level for sbertd\.service: (\d+\.\d+)", r.stdout)
        if check(m, "no exposure figure in systemd-analyze security output"):
            exposure = float(m.group(1))
            print("exposure %.1f" % exposure)
            check(exposure <= 2.0, "exposure %.1f > 2.0" % exposure)
        # --threshold is systemd's own pass/fail on the same figure (x10).
        r = run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", unit])
        check(r.returncode == 0, "systemd-analyze security --threshold=20 exit %d" % r.returncode)
        # The backup service: a client of the daemon's socket and a pruner of one folder, no more.
        backup = os.path.join(os.path.dirname(unit), "sbertd-backup.service")
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", backup])
        print(r.stdout, file=sys.stderr)
        m = re.search(r"Overall exposure level for sbertd-backup\.service: (\d+\.\d+)", r.stdout)
        if check(m, "no exposure figure for sbertd-backup.service"):
            print("sbertd-backup.service exposure %.1f" % float(m.group(1)))
            check(float(m.group(1)) <= 1.0, "sbertd-backup.service exposure %s > 1.0" % m.group(1))
        with open(unit) as f:
            text = f.read()
        for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=sbertd",
                        "StateDirectory=sbertd", "RuntimeDirectory=sbertd", "ConfigurationDirectory=sbertd",
                        "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                        "PrivateDevices=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                        "SystemCallFilter=@system-service", "RestrictNamespaces=yes", "LockPersonality=yes",
                        "MemoryDenyWriteExecute=yes", "CapabilityBoundingSet=\n"):
            check(setting in text, "unit lacks " + setting.strip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def libraries(binary):
    r = run(["ldd", binary])
    check(r.returncode == 0, "ldd %s failed" % binary)
    return [m.group(1) for m in re.finditer(r"=> (/\S+)", r.stdout)]


def mode_mdwe(build, source):
    sbertd = os.path.join(build, "daemon/sbertd")
    encode = os.path.join(build, "encoder/sbert-encode")
    for b in (sbertd, encode):
        check(os.path.isfile(b), "not built: " + b)
    objs = [b for b in (sbertd, encode) if os.path.isfile(b)]
    for b in list(objs):
        objs += libraries(b)
    for obj in sorted(set(objs)):
        r = run(["readelf", "-lW", "-d", obj])
        stack = re.search(r"GNU_STACK\s+(?:\S+\s+){5}(\S+)", r.stdout)
        check(stack and "E" not in stack.group(1), "%s wants an executable stack (%s)"
              % (obj, stack.group(1) if stack else "no GNU_STACK header"))
        check("TEXTREL" not in r.stdout, obj + " has text relocations")
    print("%d objects checked: no executable stack, no text relocations" % len(set(objs)))

    # The kernel's own W^X switch, inherited across execve like systemd's seccomp filter.
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            os._exit(77)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WEXITSTATUS(status) == 77:
        print("kernel %s has no PR_SET_MDWE: run-time check not possible here, static check only"
              % os.uname().release)
        return
    model = os.environ.get("SBERT_MODEL_DIR", "")
    if not check(os.path.isfile(os.path.join(model, "model.safetensors")), "SBERT_MODEL_DIR has no model"):
        return
    wrapper = ("import ctypes,os,sys\n"
               "l=ctypes.CDLL(None,use_errno=True)\n"
               "assert l.prctl(65,1,0,0,0)==0\n"
               "os.execv(sys.argv[1],sys.argv[1:])\n")
    r = subprocess.run([sys.executable, "-c", wrapper, encode, "--model", model, "--threads", "2"],
                       input="A man is eating food.\n", capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("[") and r.stdout.count(",") == 383,
          "sbert-encode under PR_SET_MDWE: rc %d, stderr %s" % (r.returncode, r.stderr[-500:]))
    # And the switch is really on: a W+X mapping is refused in the same setup.
    probe = ("import ctypes,mmap\n"
             "l=ctypes.CDLL(None,use_errno=True)\n"
             "assert l.prctl(65,1,0,0,0)==0\n"
             "try:\n mmap.mmap(-1,4096,prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC)\nexcept OSError:\n print('refused')\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    check(r.stdout.strip() == "refused", "PR_SET_MDWE did not refuse a W+X mapping: " + r.stdout + r.stderr)
    print("sbert-encode (OpenBLAS, libgomp) ran under PR_SET_MDWE")


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("install", "verify", "security", "mdwe"):
        sys.exit(__doc__)
    mode, build, source = sys.argv[1:]
    {"install": mode_install, "verify": mode_verify, "security": mode_security,
     "mdwe": mode_mdwe}[mode](os.path.abspath(build), os.path.abspath(source))
    if failures:
        print("%d check(s) failed" % len(failures), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
