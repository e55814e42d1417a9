import base64

import numpy as np

from cnnlab import plots
from cnnlab.report import Report


def test_report_embeds_images_and_writes_markdown(tmp_path):
    png = plots.confusion_matrix([[5, 1], [2, 7]], ["cat", "dog"], tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (
        Report("Run <1>")
        .heading("Results")
        .paragraph("accuracy rose", css_class="conclusion")
        .table([{"level": "3x3", "accuracy": 0.912345}])
        .image(png, "Confusion matrix")
    )
    html_path, md_path = report.write(tmp_path)
    html = html_path.read_text()
    assert "Run &lt;1&gt;" in html  # escaped
    assert base64.b64encode(png.read_bytes()).decode()[:100] in html
    assert "<td>0.9123</td>" in html
    md = md_path.read_text()
    assert "![Confusion matrix](cm.png)" in md and "> accuracy rose" in md


def test_plots_write_pngs(tmp_path):
    history = [
        {
            "epoch": 1,
            "train_loss": 1.0,
            "val_loss": 1.1,
            "train_accuracy": 0.5,
            "val_accuracy": 0.4,
        },
        {
            "epoch": 2,
            "train_loss": 0.5,
            "val_loss": 0.7,
            "train_accuracy": 0.8,
            "val_accuracy": 0.7,
        },
    ]
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], size=30)
    y = rng.integers(0, 3, size=30)
    paths = [
        plots.learning_curves(history, tmp_path / "curves.png"),
        plots.roc_curves(y, proba, ["a", "b", "c"], tmp_path / "roc.png"),
        plots.image_grid([rng.random((28, 28))] * 3, ["x", "y", "z"], tmp_path / "grid.png"),
        plots.errorbar_by_level(
            ["3", "5"],
            [0.9, 0.8],
            [0.85, 0.7],
            [0.95, 0.9],
            tmp_path / "e.png",
            ylabel="accuracy",
            title="t",
            reference=0.9,
        ),  # fmt: skip
    ]
    for p in paths:
        assert p.stat().st_size > 1000


def test_bar_notes_are_drawn_above_their_bars(tmp_path, monkeypatch):
    drawn, real = {}, plots.save_figure

    def keep(fig, path, dpi=110):
        ax = fig.axes[0]
        drawn["notes"] = [t.get_text() for t in ax.texts]
        drawn["top"] = ax.get_ylim()[1]
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    path = plots.bars_by_level(
        ["a", "b"], [0.99, 0.5], tmp_path / "bars.png", "share", "t", notes=["7.1 pts", ""]
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn["notes"] == ["7.1 pts", ""]
    assert drawn["top"] > 0.99  # room above the tallest bar for its note


def test_contents_link_every_section_by_the_anchor_github_gives_it():
    rep = Report("t").heading("Takeaways").contents()
    rep.heading("Kernel (filter) size").heading("Detail", 3).heading("Kernel (filter) size")
    html = rep.to_html()
    assert '<h2 id="kernel-filter-size">' in html and '<h2 id="kernel-filter-size-1">' in html
    assert '<li><a href="#kernel-filter-size-1">Kernel (filter) size</a></li>' in html
    assert 'href="#detail"' not in html  # level 2 only
    md = rep.to_markdown()
    assert "- [Takeaways](#takeaways)\n- [Kernel (filter) size](#kernel-filter-size)\n" in md


def test_intervals_by_label_writes_a_png(tmp_path):
    lows, highs = [1.5, 0.5], [2.5, float("nan")]  # a missing bound draws no whisker
    path = plots.intervals_by_label(["a long factor name", "b"], [2.0, 1.0], lows, highs,
                                    tmp_path / "i.png", "points", "t")  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
