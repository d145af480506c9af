"""What every benchmark prints about the machine it ran on (standard library only, so that the
benchmarks without the peers' packages can use it too)."""
import platform


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or what the platform module knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def loadavg():
    """The 1, 5 and 15 minute load averages as one string."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
