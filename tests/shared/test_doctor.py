"""``cnnlab --version`` and ``cnnlab doctor``: what this machine gives cnnlab, at once."""

import sys

import cnnlab
from cnnlab import doctor
from cnnlab_testing import cnnlab as run_cnnlab


def test_version_prints_the_package_version_and_exits_0():
    done = run_cnnlab("--version")
    assert done.returncode == 0 and done.stdout == f"cnnlab {cnnlab.__version__}\n"


def test_doctor_names_versions_cpu_vector_unit_threads_gpu_data_and_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cpuinfo = "model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t: 17\nflags\t: sse avx2 avx512f\n\n"
    monkeypatch.setattr(doctor, "cpu_description",
                        lambda: doctor_cpu(cpuinfo))  # fmt: skip
    rows = dict(doctor.report())
    assert rows["cnnlab"] == cnnlab.__version__
    assert rows["python"].startswith(sys.version.split()[0])
    assert rows["CPU"] == "AMD EPYC (family 25 model 17, AVX-512)"
    assert rows["threads"] == "OMP_NUM_THREADS=1"
    assert rows["caches"].endswith("(empty)") and str(tmp_path / "cache") in rows["caches"]
    assert {"GPU", "Fashion-MNIST", "extras", "Keras backend", "cores"} <= set(rows)


def doctor_cpu(cpuinfo):
    from cnnlab.machine import cpu_description

    return cpu_description(cpuinfo)


def test_doctor_says_where_fashion_mnist_was_found_or_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path))
    assert dict(doctor.report())["Fashion-MNIST"].startswith(f"not found in {tmp_path}")
    for name in doctor.FMNIST_FILES:
        (tmp_path / name).write_bytes(b"")
    assert dict(doctor.report())["Fashion-MNIST"] == f"{tmp_path} ($CNNLAB_DATA_DIR)"


def test_the_doctor_command_prints_one_aligned_line_per_finding_without_loading_frameworks():
    code = (
        "import sys; from cnnlab.cli import main\n"
        "try:\n    main(['doctor'])\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules, 'framework'\n"
    )
    import subprocess

    from cnnlab_testing import cnnlab_env

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cnnlab_env(), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["cnnlab", cnnlab.__version__]
    column = lines[0].index(cnnlab.__version__)
    assert all(len(line) > column and line[column - 2 : column] == "  " for line in lines)
