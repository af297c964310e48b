//! The pack as PDF: headless Chromium prints the single-file HTML (`html::document`). The HTML
//! has no scripts and no external resources, so Chromium needs no network; it runs with a
//! fresh profile in a private directory that is removed afterwards, and is killed if it takes
//! longer than `TIMEOUT`.
//!
//! Chromium is found in `PORTCULLIS_CHROMIUM`, else as `chromium`, `chromium-browser`,
//! `google-chrome` or `google-chrome-stable` on the PATH (Debian's `chromium` package;
//! `scripts/setup.sh` installs it).

use super::ReviewError;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(90);
const NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The Chromium to print with, if there is one.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PORTCULLIS_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| NAMES.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Removes the working directory however printing ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints `html` to PDF bytes.
pub async fn render(html: &str) -> Result<Vec<u8>, ReviewError> {
    let chrome = chromium().ok_or_else(|| {
        ReviewError::Pdf(
            "PDF needs Chromium: install the chromium package or set PORTCULLIS_CHROMIUM \
             (the HTML and JSON formats work without it)"
                .into(),
        )
    })?;
    let dir = std::env::temp_dir().join(format!("portcullis-pack-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| ReviewError::Pdf(format!("scratch dir: {e}")))?;
    let scratch = Scratch(dir);
    let page = scratch.0.join("pack.html");
    let out = scratch.0.join("pack.pdf");
    std::fs::write(&page, html).map_err(|e| ReviewError::Pdf(format!("writing the page: {e}")))?;
    print(&chrome, &scratch.0, &page, &out).await?;
    let pdf = std::fs::read(&out).map_err(|e| ReviewError::Pdf(format!("reading the PDF: {e}")))?;
    if !pdf.starts_with(b"%PDF") {
        return Err(ReviewError::Pdf(
            "Chromium wrote something that is not a PDF".into(),
        ));
    }
    Ok(pdf)
}

async fn print(chrome: &Path, dir: &Path, page: &Path, out: &Path) -> Result<(), ReviewError> {
    let mut cmd = tokio::process::Command::new(chrome);
    cmd.arg("--headless")
        .arg("--no-sandbox")
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .arg("--no-first-run")
        .arg("--disable-background-networking")
        .arg("--disable-component-update")
        .arg("--disable-sync")
        .arg("--disable-extensions")
        .arg("--no-pdf-header-footer")
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| ReviewError::Pdf(format!("starting {}: {e}", chrome.display())))?;
    let done = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ReviewError::Pdf("Chromium did not finish printing in time".into()))?
        .map_err(|e| ReviewError::Pdf(format!("Chromium: {e}")))?;
    if !done.status.success() || !out.is_file() {
        let err = String::from_utf8_lossy(&done.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(ReviewError::Pdf(format!(
            "Chromium could not print the pack ({}): {last}",
            done.status
        )));
    }
    Ok(())
}
