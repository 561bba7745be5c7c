//! Blocks of README.md, which tests run as they stand: what it shows is a contract.

/// The fenced block of `lang` after the `<!-- marker` comment in README.md.
pub fn block(marker: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split(&format!("<!-- {marker}"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has the {marker} block"));
    let block = after
        .split(&format!("```{lang}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("a {lang} block follows {marker}"));
    block.split("```").next().unwrap().to_string()
}

/// The lines of the text block after the `<!-- marker` comment in README.md.
pub fn expected(marker: &str) -> Vec<String> {
    block(marker, "text").lines().map(str::to_string).collect()
}
