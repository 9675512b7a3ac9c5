//! Finding isles by what a user types: a name, a full id, or an id prefix
//! that only one isle has.
//!
//! A full id wins, then a name, then a prefix, as Docker resolves them: a
//! name may look like hex, and a prefix is the least specific of the three.

use std::fs;

use super::record::Record;
use super::{short_id, IsleError, Result};
use crate::paths::StateRoot;

/// How many ids an ambiguity error lists before "...".
const EXAMPLES: usize = 3;

/// Every isle of `root` with a readable record, oldest first (ties by id, so
/// the order is stable). Directories without a record are being created or
/// are left over for `gc`; no command acts on them.
pub fn all(root: &StateRoot) -> Vec<Record> {
    let mut records: Vec<Record> = fs::read_dir(root.isles_run_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| Record::load(&e.path()))
                .collect()
        })
        .unwrap_or_default();
    records.sort_by(|a, b| {
        a.created_unix
            .cmp(&b.created_unix)
            .then_with(|| a.id.cmp(&b.id))
    });
    records
}

/// The isle `query` names among `records`.
pub fn resolve<'a>(records: &'a [Record], query: &str) -> Result<&'a Record> {
    if query.is_empty() {
        return Err(IsleError::NoSuchIsle(String::new()));
    }
    if let Some(r) = records.iter().find(|r| r.id == query) {
        return Ok(r);
    }
    let named: Vec<&Record> = records
        .iter()
        .filter(|r| r.name.as_deref() == Some(query))
        .collect();
    match named.as_slice() {
        [one] => return Ok(one),
        [] => {}
        many => {
            return Err(IsleError::AmbiguousName {
                name: query.to_string(),
                count: many.len(),
                examples: examples(many),
            })
        }
    }
    // Ids are lowercase hex; a prefix in capitals means the same isle.
    let prefix = query.to_ascii_lowercase();
    let matches: Vec<&Record> = records
        .iter()
        .filter(|r| r.id.starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(IsleError::NoSuchIsle(query.to_string())),
        many => Err(IsleError::AmbiguousPrefix {
            prefix: query.to_string(),
            count: many.len(),
            examples: examples(many),
        }),
    }
}

/// The isle `query` names in `root`.
pub fn find(root: &StateRoot, query: &str) -> Result<Record> {
    resolve(&all(root), query).cloned()
}

/// The isles `queries` name, in the order given, each once; the first query
/// that names none (or several) is the error, before any isle is acted on.
pub fn find_all(root: &StateRoot, queries: &[String]) -> Result<Vec<(String, Record)>> {
    let records = all(root);
    let mut out: Vec<(String, Record)> = Vec::new();
    for q in queries {
        let rec = resolve(&records, q)?;
        if !out.iter().any(|(_, r)| r.id == rec.id) {
            out.push((q.clone(), rec.clone()));
        }
    }
    Ok(out)
}

fn examples(records: &[&Record]) -> String {
    let mut shown: Vec<String> = records
        .iter()
        .take(EXAMPLES)
        .map(|r| format!("{}...", short_id(&r.id)))
        .collect();
    if records.len() > EXAMPLES {
        shown.push("...".into());
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isle::record::{ProcessId, Status};

    fn rec(id: &str, name: Option<&str>) -> Record {
        Record {
            id: id.to_string(),
            status: Status::Exited,
            created_unix: 0,
            supervisor: ProcessId {
                pid: 1,
                start_time: 0,
            },
            pid: None,
            image: None,
            name: name.map(str::to_string),
            rootfs: "/".into(),
            layers: "/".into(),
            detached: true,
            auto_remove: false,
            command: vec![],
            log_dir: "/".into(),
            exit: None,
        }
    }

    fn id(prefix: &str) -> String {
        format!("{prefix}{}", "0".repeat(64 - prefix.len()))
    }

    #[test]
    fn ids_names_and_prefixes_resolve() {
        let recs = vec![
            rec(&id("ab12"), Some("web")),
            rec(&id("ab34"), None),
            rec(&id("cd"), Some("ab12")),
        ];
        assert_eq!(resolve(&recs, &id("ab12")).unwrap().id, id("ab12"));
        assert_eq!(resolve(&recs, "web").unwrap().id, id("ab12"));
        // A name beats a prefix it looks like.
        assert_eq!(resolve(&recs, "ab12").unwrap().id, id("cd"));
        assert_eq!(resolve(&recs, "ab3").unwrap().id, id("ab34"));
        assert_eq!(resolve(&recs, "AB3").unwrap().id, id("ab34"));
    }

    #[test]
    fn unknown_and_ambiguous_queries_are_errors() {
        let recs = vec![
            rec(&id("ab12"), None),
            rec(&id("ab34"), None),
            rec(&id("ab56"), None),
            rec(&id("ab78"), None),
        ];
        let e = resolve(&recs, "zz").unwrap_err().to_string();
        assert_eq!(e, "no such isle 'zz'");
        let e = resolve(&recs, "ab").unwrap_err().to_string();
        assert!(e.starts_with("isle prefix 'ab' is ambiguous: matches 4 isles (ab1200000000..., ab3400000000..., ab5600000000..., ...)"), "{e}");
        assert!(resolve(&recs, "").is_err());
    }

    #[test]
    fn a_shared_name_is_ambiguous() {
        let recs = vec![rec(&id("ab"), Some("x")), rec(&id("cd"), Some("x"))];
        let e = resolve(&recs, "x").unwrap_err().to_string();
        assert!(
            e.starts_with("the name 'x' is ambiguous: 2 isles have it"),
            "{e}"
        );
    }
}
