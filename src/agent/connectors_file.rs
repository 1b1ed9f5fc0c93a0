//! The `--connectors-file` of the real drivers (`process`, `postgres`): a
//! TOML table of connectors by id, each entry checked by its driver. A
//! mistake is named by its line and its connector, never shown: a line may
//! hold a secret (an environment variable's value, a connection string).

use anyhow::Context;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File<E> {
    #[serde(default = "BTreeMap::new")]
    connectors: BTreeMap<String, E>,
}

/// Reads the file at `path` and parses it with `parse`.
pub fn load<S>(
    path: &Path,
    parse: impl FnOnce(&str) -> anyhow::Result<BTreeMap<String, S>>,
) -> anyhow::Result<BTreeMap<String, S>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the connectors file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the connectors file {}", path.display()))
}

/// Each connector's entry `E`, made a spec by `check`.
pub fn parse<E: DeserializeOwned, S>(
    text: &str,
    check: impl Fn(E) -> anyhow::Result<S>,
) -> anyhow::Result<BTreeMap<String, S>> {
    let file: File<E> = toml::from_str(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1);
        match line {
            Some(line) => anyhow::anyhow!("line {line}: {}", error.message()),
            None => anyhow::anyhow!("{}", error.message()),
        }
    })?;
    file.connectors
        .into_iter()
        .map(|(id, entry)| {
            let spec = check(entry).with_context(|| format!("connector {id}"))?;
            Ok((id, spec))
        })
        .collect()
}
