from cnnlab_testing import cnnlab as run_cli


def test_unknown_flag_is_one_line_and_exit_2():
    result = run_cli("--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["cnnlab: error: No such option: --no-such-flag"]


def test_unknown_command_is_one_line_and_exit_2():
    result = run_cli("frobnicate")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error:") and "frobnicate" in lines[0]


def test_help_lists_both_pipelines():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "study" in result.stdout and "transfer" in result.stdout
