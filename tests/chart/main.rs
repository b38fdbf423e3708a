//! Helm chart, examples and dashboard checks: runs `tests/chart/test_chart.py`, which drives real
//! Helm through PyPI `helm-sdkpy` (installed by `scripts/test.sh`).

use std::path::Path;
use std::process::Command;

#[test]
fn chart_lint_render_and_examples() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("chart");
    let output = Command::new("python3")
        .arg(dir.join("test_chart.py"))
        .current_dir(&dir)
        .output()
        .expect("python3 must be on PATH (scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/chart/test_chart.py failed (missing helm_sdkpy? run scripts/test.sh):\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("\nOK"), "unexpected unittest summary:\n{stderr}");
}
