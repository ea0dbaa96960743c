//! Reading a policy file: TOML → [`Policy`], strictly, with a position for
//! every value and every error.
//!
//! ```
//! let errs = bulkhead_policy::parse("version = 1\ncolour = \"red\"\n").unwrap_err();
//! assert_eq!((errs[0].code, errs[0].pos.line, errs[0].pos.col), ("P002", 2, 1));
//! ```

use std::ops::Range;

use toml_edit::{Document, Item, Key, TableLike, Value};

use crate::diag::PolicyDiagnostic;
use crate::{
    ChannelRef, Criticality, Direction, Domain, EndRef, Exemption, Flow, Policy, Pos, Rules,
    Spanned, Unassigned, FORMAT_VERSION,
};

/// Parses and checks a policy. Returns every error found (not just the
/// first), in source order.
pub fn parse(src: &str) -> Result<Policy, Vec<PolicyDiagnostic>> {
    let mut cx = Cx::new(src);
    let doc = match Document::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            let pos = cx.pos(e.span());
            return Err(vec![PolicyDiagnostic::error(
                "P001",
                pos,
                format!("not valid TOML: {}", e.message()),
                "see https://toml.io for the syntax",
            )]);
        }
    };
    let policy = cx.policy(doc.as_table());
    // Cross-reference checks only on a well-formed policy, so that one
    // mistake (a misspelt criticality) is not reported again as its
    // consequences (an unknown domain in every flow).
    if cx.diags.is_empty() {
        crate::validate::internal(&policy, &mut cx.diags);
    }
    cx.diags.sort_by_key(|d| d.pos);
    if cx.diags.iter().any(PolicyDiagnostic::is_error) {
        Err(cx.diags)
    } else {
        Ok(policy)
    }
}

/// Parsing context: the source's line starts and the errors so far.
struct Cx<'s> {
    src: &'s str,
    line_starts: Vec<usize>,
    diags: Vec<PolicyDiagnostic>,
}

/// One table-like entry of an array of tables, with its position.
type Entry<'a> = (&'a dyn TableLike, Pos);

impl<'s> Cx<'s> {
    fn new(src: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Cx {
            src,
            line_starts,
            diags: Vec::new(),
        }
    }

    /// 1-based line and column (in characters) of byte offset `span.start`.
    fn pos(&self, span: Option<Range<usize>>) -> Pos {
        let Some(span) = span else {
            return Pos { line: 1, col: 1 };
        };
        let off = span.start.min(self.src.len());
        let line = self.line_starts.partition_point(|&s| s <= off);
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self.src.get(start..off).map_or(0, |s| s.chars().count());
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        }
    }

    fn err(&mut self, code: &'static str, pos: Pos, message: String, hint: &str) {
        self.diags
            .push(PolicyDiagnostic::error(code, pos, message, hint));
    }

    fn key_pos(&self, k: &Key) -> Pos {
        self.pos(k.span())
    }

    fn item_pos(&self, it: &Item) -> Pos {
        self.pos(it.span())
    }

    fn wrong_type(&mut self, it: &Item, key: &str, expected: &str) {
        let pos = self.item_pos(it);
        self.err(
            "P004",
            pos,
            format!("`{key}` must be {expected}, not {}", it.type_name()),
            "see the format in tools/policy/README.md",
        );
    }

    /// The keys of `t`, with an error for each one not in `allowed`.
    fn keys<'t>(
        &mut self,
        t: &'t dyn TableLike,
        table: &str,
        allowed: &[&str],
    ) -> Vec<(&'t str, Pos, &'t Item)> {
        let mut out = Vec::new();
        for (name, item) in t.iter() {
            let pos = t
                .get_key_value(name)
                .map_or_else(|| self.item_pos(item), |(k, _)| self.key_pos(k));
            if allowed.contains(&name) {
                out.push((name, pos, item));
            } else {
                self.err(
                    "P002",
                    pos,
                    format!("unknown key `{name}` in {table}"),
                    &format!("the keys of {table} are: {}", allowed.join(", ")),
                );
            }
        }
        out
    }

    fn missing(&mut self, at: Pos, key: &str, table: &str) {
        self.err(
            "P003",
            at,
            format!("{table} has no `{key}`"),
            &format!("add `{key} = …` (see tools/policy/README.md)"),
        );
    }

    fn string(&mut self, it: &Item, key: &str) -> Option<Spanned<String>> {
        match it.as_str() {
            Some(s) => Some(Spanned {
                value: s.to_owned(),
                pos: self.item_pos(it),
            }),
            None => {
                self.wrong_type(it, key, "a string");
                None
            }
        }
    }

    fn string_list(&mut self, it: &Item, key: &str) -> Option<Vec<Spanned<String>>> {
        let Some(arr) = it.as_array() else {
            self.wrong_type(it, key, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            let pos = self.pos(v.span());
            match v.as_str() {
                Some(s) if !s.trim().is_empty() => out.push(Spanned {
                    value: s.to_owned(),
                    pos,
                }),
                Some(_) => self.err(
                    "P006",
                    pos,
                    format!("empty name in `{key}`"),
                    "write the PD, VM, region or channel name",
                ),
                None => self.err(
                    "P004",
                    pos,
                    format!("`{key}` must hold strings, not {}", v.type_name()),
                    "quote the name",
                ),
            }
        }
        Some(out)
    }

    fn bool(&mut self, it: &Item, key: &str) -> Option<Spanned<bool>> {
        match it.as_bool() {
            Some(b) => Some(Spanned {
                value: b,
                pos: self.item_pos(it),
            }),
            None => {
                self.wrong_type(it, key, "true or false");
                None
            }
        }
    }

    /// The entries of `[[name]]` (or `name = [{…}, …]`).
    fn tables<'t>(&mut self, it: &'t Item, key: &str) -> Vec<Entry<'t>> {
        if let Some(aot) = it.as_array_of_tables() {
            return aot
                .iter()
                .map(|t| (t as &dyn TableLike, self.pos(t.span())))
                .collect();
        }
        if let Some(arr) = it.as_array() {
            let mut out = Vec::new();
            for v in arr.iter() {
                match v {
                    Value::InlineTable(t) => out.push((t as &dyn TableLike, self.pos(t.span()))),
                    other => {
                        let pos = self.pos(other.span());
                        self.err(
                            "P004",
                            pos,
                            format!("`{key}` entries must be tables, not {}", other.type_name()),
                            &format!("write each entry as a [[{key}]] table"),
                        );
                    }
                }
            }
            return out;
        }
        self.wrong_type(it, key, &format!("an array of tables ([[{key}]])"));
        Vec::new()
    }

    fn policy(&mut self, root: &dyn TableLike) -> Policy {
        let start = Pos { line: 1, col: 1 };
        let mut version = None;
        let mut unassigned = Spanned {
            value: Unassigned::Error,
            pos: start,
        };
        let mut rules = Rules {
            forbid_stack_bottom_maps: Spanned {
                value: true,
                pos: start,
            },
            forbid_safety_ppc_into_restartable: Spanned {
                value: true,
                pos: start,
            },
        };
        let mut domains = Vec::new();
        let mut flows = Vec::new();
        let mut exemptions = Vec::new();
        let allowed = [
            "version",
            "unassigned",
            "rules",
            "domain",
            "flow",
            "exemption",
        ];
        for (key, _, it) in self.keys(root, "the policy", &allowed) {
            match key {
                "version" => version = self.version(it),
                "unassigned" => {
                    if let Some(s) = self.string(it, key) {
                        match s.value.as_str() {
                            "error" => {
                                unassigned = Spanned {
                                    value: Unassigned::Error,
                                    pos: s.pos,
                                }
                            }
                            "warn" => {
                                unassigned = Spanned {
                                    value: Unassigned::Warn,
                                    pos: s.pos,
                                }
                            }
                            other => self.err(
                                "P006",
                                s.pos,
                                format!("`unassigned = \"{other}\"` is not a choice"),
                                "use \"error\" (the default) or \"warn\"",
                            ),
                        }
                    }
                }
                "rules" => self.rules(it, &mut rules),
                "domain" => {
                    for (t, pos) in self.tables(it, key) {
                        if let Some(d) = self.domain(t, pos) {
                            domains.push(d);
                        }
                    }
                }
                "flow" => {
                    for (t, pos) in self.tables(it, key) {
                        if let Some(f) = self.flow(t, pos) {
                            flows.push(f);
                        }
                    }
                }
                _ => {
                    for (t, pos) in self.tables(it, key) {
                        if let Some(e) = self.exemption(t, pos) {
                            exemptions.push(e);
                        }
                    }
                }
            }
        }
        let version = version.unwrap_or_else(|| {
            if !root.contains_key("version") {
                self.missing(start, "version", "the policy");
            }
            Spanned {
                value: FORMAT_VERSION,
                pos: start,
            }
        });
        Policy {
            version,
            unassigned,
            rules,
            domains,
            flows,
            exemptions,
        }
    }

    fn exemption(&mut self, t: &dyn TableLike, pos: Pos) -> Option<Exemption> {
        let (mut regions, mut reason) = (None, None);
        for (key, _, it) in self.keys(t, "[[exemption]]", &["regions", "reason"]) {
            if key == "regions" {
                regions = self.string_list(it, key);
            } else {
                reason = self.string(it, key);
            }
        }
        for (key, absent) in [("regions", regions.is_none()), ("reason", reason.is_none())] {
            if absent && !t.contains_key(key) {
                self.missing(pos, key, "[[exemption]]");
            }
        }
        if regions.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                "P012",
                pos,
                "this exemption names no region".into(),
                "list the device regions it covers: regions = [\"…\"]",
            );
        }
        Some(Exemption {
            regions: regions?,
            reason: reason?,
            pos,
        })
    }

    fn version(&mut self, it: &Item) -> Option<Spanned<i64>> {
        let pos = self.item_pos(it);
        let Some(v) = it.as_integer() else {
            self.wrong_type(it, "version", "an integer");
            return None;
        };
        if v != FORMAT_VERSION {
            self.err(
                "P005",
                pos,
                format!("policy format version {v} is not supported"),
                &format!("this tool reads version {FORMAT_VERSION}; use a matching bulkhead"),
            );
        }
        Some(Spanned { value: v, pos })
    }

    fn rules(&mut self, it: &Item, rules: &mut Rules) {
        let Some(t) = it.as_table_like() else {
            self.wrong_type(it, "rules", "a table ([rules])");
            return;
        };
        let allowed = [
            "forbid_stack_bottom_maps",
            "forbid_safety_ppc_into_restartable",
        ];
        for (key, _, v) in self.keys(t, "[rules]", &allowed) {
            let Some(b) = self.bool(v, key) else { continue };
            if key == "forbid_stack_bottom_maps" {
                rules.forbid_stack_bottom_maps = b;
            } else {
                rules.forbid_safety_ppc_into_restartable = b;
            }
        }
    }

    fn domain(&mut self, t: &dyn TableLike, pos: Pos) -> Option<Domain> {
        let (mut name, mut crit, mut description, mut members) = (None, None, None, None);
        let allowed = ["name", "criticality", "description", "members"];
        for (key, _, it) in self.keys(t, "[[domain]]", &allowed) {
            match key {
                "name" => {
                    name = self.string(it, key);
                    if let Some(n) = &name {
                        if !is_domain_name(&n.value) {
                            let (p, v) = (n.pos, n.value.clone());
                            self.err(
                                "P006",
                                p,
                                format!("domain name `{v}` is not a plain name"),
                                "use lower-case letters, digits, `-` and `_`, starting with a letter",
                            );
                        }
                    }
                }
                "criticality" => crit = self.criticality(it),
                "description" => description = self.string(it, key),
                _ => members = self.string_list(it, key),
            }
        }
        if name.is_none() && !t.contains_key("name") {
            self.missing(pos, "name", "[[domain]]");
        }
        if crit.is_none() && !t.contains_key("criticality") {
            self.missing(pos, "criticality", "[[domain]]");
        }
        if members.is_none() && !t.contains_key("members") {
            self.missing(pos, "members", "[[domain]]");
        }
        Some(Domain {
            name: name?,
            criticality: crit?,
            description,
            members: members?,
            pos,
        })
    }

    fn criticality(&mut self, it: &Item) -> Option<Spanned<Criticality>> {
        let s = self.string(it, "criticality")?;
        match Criticality::ALL.iter().find(|(_, name)| *name == s.value) {
            Some((c, _)) => Some(Spanned {
                value: *c,
                pos: s.pos,
            }),
            None => {
                self.err(
                    "P006",
                    s.pos,
                    format!("criticality `{}` is not an ISO 26262 level", s.value),
                    "use one of QM, ASIL-A, ASIL-B, ASIL-C, ASIL-D",
                );
                None
            }
        }
    }

    fn flow(&mut self, t: &dyn TableLike, pos: Pos) -> Option<Flow> {
        let mut regions = Vec::new();
        let mut channels = Vec::new();
        let (mut from, mut to, mut direction, mut via, mut reason) = (None, None, None, None, None);
        let allowed = [
            "regions",
            "channels",
            "from",
            "to",
            "direction",
            "via",
            "reason",
        ];
        let mut bad = false;
        for (key, _, it) in self.keys(t, "[[flow]]", &allowed) {
            match key {
                "regions" => regions = self.string_list(it, key).unwrap_or_default(),
                "channels" => {
                    for s in self.string_list(it, key).unwrap_or_default() {
                        match parse_channel(&s.value) {
                            Some(c) => channels.push(Spanned {
                                value: c,
                                pos: s.pos,
                            }),
                            None => {
                                bad = true;
                                self.err(
                                    "P006",
                                    s.pos,
                                    format!("`{}` is not a channel", s.value),
                                    "write \"pd_a <-> pd_b\", or with channel ids \"pd_a:1 <-> pd_b:4\"",
                                );
                            }
                        }
                    }
                }
                "from" => from = self.string(it, key),
                "to" => to = self.string(it, key),
                "via" => via = self.string(it, key),
                "reason" => reason = self.string(it, key),
                _ => {
                    let Some(s) = self.string(it, key) else {
                        continue;
                    };
                    direction = match s.value.as_str() {
                        "one-way" => Some(Spanned {
                            value: Direction::OneWay,
                            pos: s.pos,
                        }),
                        "two-way" => Some(Spanned {
                            value: Direction::TwoWay,
                            pos: s.pos,
                        }),
                        other => {
                            self.err(
                                "P006",
                                s.pos,
                                format!("direction `{other}` is not a choice"),
                                "use \"one-way\" (from → to only) or \"two-way\"",
                            );
                            None
                        }
                    };
                }
            }
        }
        for (key, val) in [
            ("from", from.is_none()),
            ("to", to.is_none()),
            ("direction", direction.is_none()),
            ("via", via.is_none()),
            ("reason", reason.is_none()),
        ] {
            if val && !t.contains_key(key) {
                self.missing(pos, key, "[[flow]]");
            }
        }
        if regions.is_empty() && channels.is_empty() && !bad {
            self.err(
                "P012",
                pos,
                "this flow names no region and no channel".into(),
                "list what carries the flow: regions = [\"…\"] and/or channels = [\"pd_a <-> pd_b\"]",
            );
        }
        Some(Flow {
            regions,
            channels,
            from: from?,
            to: to?,
            direction: direction?,
            via: via?,
            reason: reason?,
            pos,
        })
    }
}

/// `[a-z][a-z0-9_-]*`.
fn is_domain_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
}

/// `"a <-> b"`, each end `pd` or `pd:id`.
fn parse_channel(s: &str) -> Option<ChannelRef> {
    let (a, b) = s.split_once("<->")?;
    Some(ChannelRef {
        ends: [parse_end(a)?, parse_end(b)?],
    })
}

fn parse_end(s: &str) -> Option<EndRef> {
    let s = s.trim();
    let (pd, id) = match s.rsplit_once(':') {
        Some((pd, id)) => (pd, Some(id.parse::<u64>().ok()?)),
        None => (s, None),
    };
    if pd.is_empty() || pd.contains(char::is_whitespace) || pd.contains("<->") {
        return None;
    }
    Some(EndRef {
        pd: pd.to_owned(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_syntax() {
        let c = parse_channel("a <-> b:4").unwrap();
        assert_eq!(
            c.ends[0],
            EndRef {
                pd: "a".into(),
                id: None
            }
        );
        assert_eq!(
            c.ends[1],
            EndRef {
                pd: "b".into(),
                id: Some(4)
            }
        );
        assert_eq!(c.to_string(), "a <-> b:4");
        for bad in [
            "a",
            "a <-> ",
            "a b <-> c",
            "a:x <-> b",
            "a <-> b <-> c",
            " <-> b",
        ] {
            assert!(parse_channel(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn positions_count_characters() {
        let cx = Cx::new("ab\né x\n");
        assert_eq!(cx.pos(Some(0..1)), Pos { line: 1, col: 1 });
        assert_eq!(cx.pos(Some(3..4)), Pos { line: 2, col: 1 });
        // 'é' is two bytes, one column.
        assert_eq!(cx.pos(Some(6..7)), Pos { line: 2, col: 3 });
        assert_eq!(cx.pos(None), Pos { line: 1, col: 1 });
    }
}
