"""Spec files within limits: alias bombs, deep nesting and oversized files are refused in one
line before they are expanded; numbers in exponent notation are numbers."""

import resource

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import load_spec
from cnnlab.study.spec.file import MAX_ALIASES, MAX_DEPTH, MAX_SPEC_BYTES, parse_text
from cnnlab_testing import cnnlab as cnnlab_cli


def alias_bomb() -> str:
    """Nine levels of nine aliases: 345 bytes that stand for 9**9 strings (the spec of
    issue 16, which used over 2.5 GB before dying with a MemoryError)."""
    items = ["&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        items.append(f"&{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "name: bomb\nfactors:\n  lr:\n    levels: [" + ", ".join(items) + "]\n"


def merge_bomb() -> str:
    """Merge keys copy the merged pairs while the mapping is constructed."""
    items = ["&a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8}"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        items.append(f"&{cur} {{<<: [" + ",".join([f"*{prev}"] * 9) + "]}")
    return "description: [" + ", ".join(items) + "]\nfactors: {kernel_size: [3]}\n"


def _limit_memory():
    # 2 GiB of address space: the bomb needs more, the refusal far less
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


@pytest.mark.parametrize("text", [alias_bomb(), merge_bomb()], ids=["aliases", "merge-keys"])
def test_a_yaml_bomb_is_refused_in_one_line_without_expanding_it(tmp_path, text):
    """In a child process with a memory limit, so that a regression fails this test instead
    of exhausting the machine."""
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert len(text) < 500
    proc = cnnlab_cli("study", "plan", path, preexec_fn=_limit_memory)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: spec "), proc.stderr
    assert "refused" in lines[0] and "values (aliases included)" in lines[0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("factors: &a {x: *a}\n", "contains it"),
        ("factors: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n", "levels deep"),
        # aliases that each add one level: shallow as written, deep once expanded
        ("x: &a0 [1]\n" + "".join(f"x{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 40)),
         r"levels deep \(aliases included\)"),
        ("a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n", "aliases"),
        ("seeds: " + "9" * 5000 + "\n", "cannot read a value"),
    ],
    ids=["recursive", "deep", "deep-by-aliases", "many-aliases", "huge-int"],
)  # fmt: skip
def test_yaml_beyond_any_real_spec_is_one_cnnlab_error(text, needle):
    with pytest.raises(CnnlabError, match=needle) as e:
        parse_text(text, "yaml", "s.yaml")
    assert "\n" not in str(e.value)


def test_deep_toml_is_refused_too():
    with pytest.raises(CnnlabError, match="levels deep"):
        parse_text("a = " + "[" * 3000 + "]" * 3000 + "\n", "toml", "s.toml")


def test_a_spec_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("factors: {kernel_size: [3]}\n" + "#" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(CnnlabError, match="KiB"):
        load_spec(path)


def test_a_few_aliases_still_work(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text(
        "budget: {train_limit: 1000, epochs: 1, val_size: 500}\n"
        "factors:\n"
        "  batch_size: &sizes [64, 256]\n"
        "  batch_size_scaled: {kind: batch_size, levels: *sizes, lr_scaling: linear,"
        " warmup_epochs: 0}\n"
    )
    spec = load_spec(path)
    assert [lv.label for lv in spec.factor("batch_size_scaled").levels] == ["64", "256"]


def test_exponent_notation_is_a_number_as_in_yaml_1_2_and_toml(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("baseline: {lr: 2e-3, l2: 1E-4}\nfactors: {lr: [1e-3, 3.0e-3, 1e-2]}\n")
    spec = load_spec(path)
    assert spec.baseline.lr == 0.002 and spec.baseline.l2 == 1e-4
    assert [lv.overrides["lr"] for lv in spec.factor("lr").levels] == [1e-3, 3e-3, 1e-2]
    # the YAML 1.1 forms are unchanged: ints stay ints, 1_000 and strings stay what they were
    assert parse_text("a: 1_000\nb: 12\nc: e5\nd: 1e\n", "yaml", "x") == {
        "a": 1000, "b": 12, "c": "e5", "d": "1e",
    }  # fmt: skip
