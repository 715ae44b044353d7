//! Retrieval evaluation on data laid out as BEIR lays it out: readers for `corpus.jsonl`,
//! `queries.jsonl` and `qrels.tsv`, and the metrics BEIR reports (nDCG@10, recall@10, recall@100,
//! MRR@100), computed as BEIR computes them with pytrec_eval (trec_eval 9.0.5 and later).
//!
//! The caller retrieves; this module only reads the files and scores ranked lists of corpus ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The deepest cutoff any metric looks at: documents ranked below this change nothing, so a run
/// need not be longer.
pub const RUN_DEPTH: usize = 100;

/// The cutoff of nDCG and of the shorter recall.
const TOP: usize = 10;

/// One line of `corpus.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusDoc {
    /// `_id`; a numeric id is kept as its decimal text, which is how `qrels.tsv` spells it.
    pub id: String,
    /// Empty when the line has none (missing, `null` or `""`).
    pub title: String,
    pub text: String,
}

/// One line of `queries.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `_id`, as in [`CorpusDoc::id`].
    pub id: String,
    pub text: String,
}

/// Relevance judgments from `qrels.tsv`: for each query, the graded documents. A grade above 0
/// means relevant; 0 (or below) means judged non-relevant, which scores as an unjudged document
/// does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Qrels {
    by_query: BTreeMap<String, BTreeMap<String, i32>>,
}

/// The three BEIR files of one data set, read and checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub corpus: Vec<CorpusDoc>,
    pub queries: Vec<Query>,
    pub qrels: Qrels,
}

/// Means over the evaluated queries: those with at least one relevant document in the qrels.
/// Every field is 0 when there are none.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// nDCG@10 with linear gain: each of the top 10 documents adds its grade / log2(rank + 1);
    /// the sum is divided by the same sum over the qrels' grades in descending order.
    pub ndcg_at_10: f64,
    /// Recall@10: relevant documents in the top 10 / relevant documents in the qrels.
    pub recall_at_10: f64,
    /// Recall@100: relevant documents in the top 100 / relevant documents in the qrels.
    pub recall_at_100: f64,
    /// MRR@100: 1 / the rank of the first relevant document, 0 when none is in the top 100.
    pub mrr: f64,
    /// How many queries the means are over.
    pub queries: usize,
}

/// Why a BEIR file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {problem}", file.display())]
    Line {
        file: PathBuf,
        /// Counted from 1, blank lines included.
        line: usize,
        problem: LineProblem,
    },
}

/// What is wrong with one line of a BEIR file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("not UTF-8")]
    NotUtf8,
    /// The line is not JSON, or a field has the wrong type. `column` counts bytes from 1.
    #[error("{message} (column {column})")]
    Json { message: String, column: usize },
    #[error("missing \"{0}\"")]
    MissingField(&'static str),
    #[error("empty {0}")]
    EmptyId(&'static str),
    #[error("duplicate id {id:?} (first on line {first_line})")]
    DuplicateId { id: String, first_line: usize },
    #[error("expected 3 tab-separated columns (query-id, corpus-id, score), found {0}")]
    Columns(usize),
    #[error("score {0:?} is not an integer")]
    Score(String),
    #[error("query id {0:?} is not in the queries file")]
    UnknownQuery(String),
    #[error("query {query:?} and document {doc:?} are already judged on line {first_line}")]
    DuplicateJudgment {
        query: String,
        doc: String,
        first_line: usize,
    },
}

impl Dataset {
    /// Reads the three files and checks that every query the qrels judge is in the queries file.
    pub fn read(corpus: &Path, queries: &Path, qrels: &Path) -> Result<Self, EvalError> {
        let corpus = read_corpus(corpus)?;
        let queries = read_queries(queries)?;
        let qrels = read_qrels(qrels, &queries)?;
        Ok(Self {
            corpus,
            queries,
            qrels,
        })
    }

    /// The queries that count in [`evaluate`], in file order. BEIR's `queries.jsonl` often holds
    /// every split's queries while `qrels.tsv` judges one split; the rest need not be run.
    pub fn evaluated_queries(&self) -> impl Iterator<Item = &Query> {
        self.queries
            .iter()
            .filter(|query| self.qrels.is_evaluated(&query.id))
    }
}

impl Qrels {
    /// The grade of `doc_id` for `query_id`, if it is judged.
    pub fn grade(&self, query_id: &str, doc_id: &str) -> Option<i32> {
        self.by_query.get(query_id)?.get(doc_id).copied()
    }

    /// Whether `query_id` has at least one relevant document, and so counts in [`evaluate`].
    pub fn is_evaluated(&self, query_id: &str) -> bool {
        self.by_query
            .get(query_id)
            .is_some_and(|docs| docs.values().any(|&grade| grade > 0))
    }

    /// The ids of the queries that count in [`evaluate`], in byte order.
    pub fn evaluated_queries(&self) -> impl Iterator<Item = &str> {
        self.by_query
            .iter()
            .filter(|(_, docs)| docs.values().any(|&grade| grade > 0))
            .map(|(query, _)| query.as_str())
    }
}

/// `(query id, corpus id, grade)` triples; a repeated pair keeps the last grade.
impl FromIterator<(String, String, i32)> for Qrels {
    fn from_iter<I: IntoIterator<Item = (String, String, i32)>>(judgments: I) -> Self {
        let mut by_query: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
        for (query, doc, grade) in judgments {
            by_query.entry(query).or_default().insert(doc, grade);
        }
        Self { by_query }
    }
}

/// Reads `corpus.jsonl`.
pub fn read_corpus(path: &Path) -> Result<Vec<CorpusDoc>, EvalError> {
    parse_corpus(open(path)?, path)
}

/// Reads `queries.jsonl`.
pub fn read_queries(path: &Path) -> Result<Vec<Query>, EvalError> {
    parse_queries(open(path)?, path)
}

/// Reads `qrels.tsv`; every query id in it must be one of `queries`.
pub fn read_qrels(path: &Path, queries: &[Query]) -> Result<Qrels, EvalError> {
    parse_qrels(open(path)?, path, queries)
}

/// Parses `corpus.jsonl` text; `file` names it in errors.
pub fn parse_corpus(reader: impl BufRead, file: &Path) -> Result<Vec<CorpusDoc>, EvalError> {
    #[derive(Deserialize)]
    #[serde(expecting = "a JSON object")]
    struct Line {
        #[serde(rename = "_id")]
        id: Option<Id>,
        title: Option<String>,
        text: Option<String>,
    }

    let mut docs = Vec::new();
    let mut seen = HashMap::new();
    for_each_line(reader, file, |number, line| {
        let Line { id, title, text } = from_json(line)?;
        let id = unique_id(id, number, &mut seen)?;
        let text = text.ok_or(LineProblem::MissingField("text"))?;
        docs.push(CorpusDoc {
            id,
            title: title.unwrap_or_default(),
            text,
        });
        Ok(())
    })?;
    Ok(docs)
}

/// Parses `queries.jsonl` text; `file` names it in errors.
pub fn parse_queries(reader: impl BufRead, file: &Path) -> Result<Vec<Query>, EvalError> {
    #[derive(Deserialize)]
    #[serde(expecting = "a JSON object")]
    struct Line {
        #[serde(rename = "_id")]
        id: Option<Id>,
        text: Option<String>,
    }

    let mut queries = Vec::new();
    let mut seen = HashMap::new();
    for_each_line(reader, file, |number, line| {
        let Line { id, text } = from_json(line)?;
        let id = unique_id(id, number, &mut seen)?;
        let text = text.ok_or(LineProblem::MissingField("text"))?;
        queries.push(Query { id, text });
        Ok(())
    })?;
    Ok(queries)
}

/// Parses `qrels.tsv` text; `file` names it in errors. Every query id must be one of `queries`.
///
/// BEIR's files start with a `query-id corpus-id score` header and BEIR skips the first line
/// unread; here the first line is taken as a header only when its score column has no digit, so a
/// file without one loses nothing and a mistyped first judgment is still an error.
pub fn parse_qrels(
    reader: impl BufRead,
    file: &Path,
    queries: &[Query],
) -> Result<Qrels, EvalError> {
    let known: HashSet<&str> = queries.iter().map(|query| query.id.as_str()).collect();
    // Each judgment with the line it came from, for the duplicate error.
    let mut by_query: BTreeMap<String, BTreeMap<String, (i32, usize)>> = BTreeMap::new();
    let mut first = true;
    for_each_line(reader, file, |number, line| {
        let columns: Vec<&str> = line.split('\t').map(str::trim).collect();
        if std::mem::take(&mut first)
            && !columns
                .get(2)
                .unwrap_or(&line)
                .bytes()
                .any(|byte| byte.is_ascii_digit())
        {
            return Ok(());
        }
        let &[query, doc, score] = columns.as_slice() else {
            return Err(LineProblem::Columns(columns.len()));
        };
        if query.is_empty() {
            return Err(LineProblem::EmptyId("query-id"));
        }
        if doc.is_empty() {
            return Err(LineProblem::EmptyId("corpus-id"));
        }
        let grade: i32 = score
            .parse()
            .map_err(|_| LineProblem::Score(score.to_owned()))?;
        if !known.contains(query) {
            return Err(LineProblem::UnknownQuery(query.to_owned()));
        }
        let docs = by_query.entry(query.to_owned()).or_default();
        if let Some(&(_, first_line)) = docs.get(doc) {
            return Err(LineProblem::DuplicateJudgment {
                query: query.to_owned(),
                doc: doc.to_owned(),
                first_line,
            });
        }
        docs.insert(doc.to_owned(), (grade, number));
        Ok(())
    })?;
    let by_query = by_query
        .into_iter()
        .map(|(query, docs)| {
            let docs = docs
                .into_iter()
                .map(|(doc, (grade, _))| (doc, grade))
                .collect();
            (query, docs)
        })
        .collect();
    Ok(Qrels { by_query })
}

/// Scores `run` (query id → corpus ids, best first) against `qrels`, as BEIR's
/// `EvaluateRetrieval.evaluate` and its MRR@k do, with three choices of ours:
///
/// - means are over the queries with at least one relevant document (a query whose judgments are
///   all 0 has no defined nDCG or recall);
/// - an evaluated query with no entry in `run` scores 0 (pytrec_eval would leave it out of the
///   mean, as `trec_eval` does without `-c`);
/// - a corpus id repeated in a ranked list counts once, at its first rank, and the ids below it
///   move up (pytrec_eval takes a run as a map from id to score, which cannot repeat an id).
///
/// BEIR also drops a document whose id equals the query's (`ignore_identical_ids`); that is for
/// data sets whose queries are documents of the corpus, and is left to the caller.
pub fn evaluate(qrels: &Qrels, run: &HashMap<String, Vec<String>>) -> Metrics {
    let mut sum = Metrics::default();
    for (query, docs) in &qrels.by_query {
        let ranked = run.get(query).map_or(&[][..], Vec::as_slice);
        let Some(scores) = score_query(docs, ranked) else {
            continue;
        };
        sum.ndcg_at_10 += scores.ndcg_at_10;
        sum.recall_at_10 += scores.recall_at_10;
        sum.recall_at_100 += scores.recall_at_100;
        sum.mrr += scores.mrr;
        sum.queries += 1;
    }
    if sum.queries == 0 {
        return sum;
    }
    let n = sum.queries as f64;
    Metrics {
        ndcg_at_10: sum.ndcg_at_10 / n,
        recall_at_10: sum.recall_at_10 / n,
        recall_at_100: sum.recall_at_100 / n,
        mrr: sum.mrr / n,
        queries: sum.queries,
    }
}

/// One query's metrics (`queries` = 1), or `None` when it has no relevant document.
fn score_query(judged: &BTreeMap<String, i32>, ranked: &[String]) -> Option<Metrics> {
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    if ideal.is_empty() {
        return None;
    }
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let relevant = ideal.len() as f64;

    let mut seen = HashSet::new();
    // The grade at each rank of the run, distinct ids only; unjudged ids grade 0.
    let grades: Vec<i32> = ranked
        .iter()
        .filter(|doc| seen.insert(doc.as_str()))
        .take(RUN_DEPTH)
        .map(|doc| judged.get(doc).copied().unwrap_or(0))
        .collect();

    let hits = |k: usize| grades.iter().take(k).filter(|&&g| g > 0).count() as f64;
    let ideal_dcg = dcg(&ideal);
    Some(Metrics {
        // ideal_dcg > 0: `ideal` holds at least one positive grade.
        ndcg_at_10: dcg(&grades) / ideal_dcg,
        recall_at_10: hits(TOP) / relevant,
        recall_at_100: hits(RUN_DEPTH) / relevant,
        mrr: grades
            .iter()
            .position(|&g| g > 0)
            .map_or(0.0, |i| 1.0 / (i + 1) as f64),
        queries: 1,
    })
}

/// DCG@10 with linear gain: the document at rank r (from 1) adds grade / log2(r + 1), as
/// trec_eval's `ndcg_cut` does since 9.0.5 (earlier versions did not discount rank 2).
/// Non-positive grades add nothing.
fn dcg(grades: &[i32]) -> f64 {
    grades
        .iter()
        .take(TOP)
        .enumerate()
        .filter(|&(_, &g)| g > 0)
        .map(|(i, &g)| f64::from(g) / (i as f64 + 2.0).log2())
        .sum()
}

/// A JSON `_id`: BEIR's files use strings, but files made elsewhere use numbers.
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                // Not a float: `1.0` would not match the `1` that qrels.tsv holds.
                f.write_str("a string or an integer")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// The id of line `number`, which must be present, non-empty and not seen on an earlier line.
fn unique_id(
    id: Option<Id>,
    number: usize,
    seen: &mut HashMap<String, usize>,
) -> Result<String, LineProblem> {
    let Id(id) = id.ok_or(LineProblem::MissingField("_id"))?;
    if id.is_empty() {
        return Err(LineProblem::EmptyId("\"_id\""));
    }
    if let Some(&first_line) = seen.get(&id) {
        return Err(LineProblem::DuplicateId { id, first_line });
    }
    seen.insert(id.clone(), number);
    Ok(id)
}

fn from_json<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, LineProblem> {
    serde_json::from_str(line).map_err(|err| {
        // serde_json ends its message with "at line 1 column N"; the line is ours to give.
        let full = err.to_string();
        let position = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&position).unwrap_or(&full);
        let message = match err.classify() {
            serde_json::error::Category::Data => message.to_owned(),
            _ => format!("invalid JSON: {message}"),
        };
        LineProblem::Json {
            message,
            column: err.column(),
        }
    })
}

fn open(path: &Path) -> Result<BufReader<File>, EvalError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| EvalError::Read {
            file: path.to_path_buf(),
            source,
        })
}

/// Calls `f` with each non-blank line and its number (from 1), without the line ending or a
/// leading byte-order mark, and names `file` and the line in any error.
fn for_each_line(
    mut reader: impl BufRead,
    file: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), LineProblem>,
) -> Result<(), EvalError> {
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| EvalError::Read {
                file: file.to_path_buf(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let at_line = |problem| EvalError::Line {
            file: file.to_path_buf(),
            line: number,
            problem,
        };
        let line = std::str::from_utf8(&buf).map_err(|_| at_line(LineProblem::NotUtf8))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if number == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.trim().is_empty() {
            continue;
        }
        f(number, line).map_err(at_line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/beir")).join(name)
    }

    fn fixture_dataset() -> Dataset {
        Dataset::read(
            &fixture("corpus.jsonl"),
            &fixture("queries.jsonl"),
            &fixture("qrels.tsv"),
        )
        .expect("the fixture reads")
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|&id| id.to_owned()).collect()
    }

    /// `n1`, `n2`, … `nK`: ids that no query judges.
    fn unjudged(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
        range.map(|i| format!("n{i}")).collect()
    }

    fn run(entries: Vec<(&str, Vec<String>)>) -> HashMap<String, Vec<String>> {
        entries
            .into_iter()
            .map(|(query, docs)| (query.to_owned(), docs))
            .collect()
    }

    /// The fixture's hand-written run:
    /// q1: d3 d4 d1 d2
    /// q2: n1 d2 d2 n2 … n8 6 n9   (d2 repeated: 6 is at rank 10 once the repeat is dropped)
    /// q3: n1 … n14 d5             (d5 at rank 15; q3's other relevant doc, d4, is not retrieved)
    fn fixture_run() -> HashMap<String, Vec<String>> {
        let q1 = ids(&["d3", "d4", "d1", "d2"]);
        let q2 = [ids(&["n1", "d2", "d2"]), unjudged(2..=8), ids(&["6", "n9"])].concat();
        let q3 = [unjudged(1..=14), ids(&["d5"])].concat();
        run(vec![("q1", q1), ("q2", q2), ("q3", q3)])
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{what}: got {actual}, expected {expected}"
        );
    }

    #[test]
    fn fixture_reads() {
        let data = fixture_dataset();
        let corpus_ids: Vec<&str> = data.corpus.iter().map(|doc| doc.id.as_str()).collect();
        // The blank line after d4 is skipped; d6's `_id` is the number 6.
        assert_eq!(corpus_ids, ["d1", "d2", "d3", "d4", "d5", "6"]);
        assert_eq!(data.corpus[1].title, "", "empty title");
        assert_eq!(data.corpus[3].title, "", "missing title");
        assert_eq!(data.corpus[0].title, "Ownership");
        let query_ids: Vec<&str> = data.queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(query_ids, ["q1", "q2", "q3"]);
        assert_eq!(data.queries[1].text, "what does cargo do");
        // The header line is not a judgment.
        assert_eq!(data.qrels.grade("query-id", "corpus-id"), None);
        assert_eq!(data.qrels.grade("q1", "d1"), Some(2));
        assert_eq!(data.qrels.grade("q1", "d4"), Some(0));
        assert_eq!(data.qrels.grade("q2", "6"), Some(2));
        assert_eq!(data.qrels.grade("q3", "d1"), None);
        let evaluated: Vec<&str> = data.evaluated_queries().map(|q| q.id.as_str()).collect();
        assert_eq!(evaluated, ["q1", "q2", "q3"]);
    }

    /// Qrels: q1 {d1: 2, d3: 1, d4: 0}, q2 {6: 2, d2: 1}, q3 {d5: 2, d4: 1}; the run is
    /// [`fixture_run`]. Rank r discounts by log2(r + 1):
    ///   log2(2) = 1, log2(3) = 1.584962500721156 (1/log2(3) = 0.6309297535714575),
    ///   log2(4) = 2, log2(11) = 3.4594316186372973 (2/log2(11) = 0.5781296526357758).
    /// Every query has ideal grades [2, 1]: IDCG@10 = 2/1 + 1/log2(3) = 2.6309297535714575.
    ///
    /// q1: d3 (1) at r1, d4 (judged 0) at r2, d1 (2) at r3, d2 (unjudged) at r4.
    ///   DCG@10 = 1/log2(2) + 2/log2(4) = 1 + 1 = 2; nDCG@10 = 2 / 2.6309297535714575
    ///   = 0.7601875334318685. Recall@10 = recall@100 = 2/2 = 1. RR = 1/1 = 1.
    /// q2: after dropping the second d2: n1 r1, d2 (1) r2, n2..n8 r3..r9, 6 (2) r10, n9 r11.
    ///   DCG@10 = 1/log2(3) + 2/log2(11) = 0.6309297535714575 + 0.5781296526357758
    ///   = 1.2090594062072333; nDCG@10 = 1.2090594062072333 / 2.6309297535714575
    ///   = 0.4595559438886381. Recall@10 = recall@100 = 2/2 = 1. RR = 1/2.
    /// q3: d5 (2) at r15, d4 (1) not in the run.
    ///   DCG@10 = 0; nDCG@10 = 0. Recall@10 = 0/2 = 0; recall@100 = 1/2. RR = 1/15.
    /// Means over 3 queries:
    ///   nDCG@10    = (0.7601875334318685 + 0.4595559438886381 + 0) / 3 = 0.4065811591068355
    ///   recall@10  = (1 + 1 + 0) / 3 = 0.6666666666666666
    ///   recall@100 = (1 + 1 + 0.5) / 3 = 0.8333333333333334
    ///   MRR@100    = (1 + 0.5 + 0.0666666666666667) / 3 = 0.5222222222222222
    /// pytrec_eval (pytrec-eval-terrier 0.5.11, `ndcg_cut.10`, `recall.10,100`, `recip_rank`)
    /// gives the same per-query values on this run with the repeat removed.
    #[test]
    fn fixture_run_scores_as_computed_by_hand() {
        let data = fixture_dataset();
        let metrics = evaluate(&data.qrels, &fixture_run());
        assert_eq!(metrics.queries, 3);
        assert_close(metrics.ndcg_at_10, 0.4065811591068355, "nDCG@10");
        assert_close(metrics.recall_at_10, 2.0 / 3.0, "recall@10");
        assert_close(metrics.recall_at_100, 2.5 / 3.0, "recall@100");
        assert_close(metrics.mrr, (1.0 + 0.5 + 1.0 / 15.0) / 3.0, "MRR@100");
    }

    /// Each query alone, so a wrong term shows which.
    #[test]
    fn fixture_queries_score_as_computed_by_hand() {
        let data = fixture_dataset();
        let full = fixture_run();
        let one = |query: &str| {
            let run = run(vec![(query, full[query].clone())]);
            let only: Qrels = data
                .qrels
                .by_query
                .get(query)
                .into_iter()
                .flat_map(|docs| docs.iter())
                .map(|(doc, &grade)| (query.to_owned(), doc.clone(), grade))
                .collect();
            evaluate(&only, &run)
        };
        let q1 = one("q1");
        assert_close(q1.ndcg_at_10, 0.7601875334318685, "q1 nDCG@10");
        assert_close(q1.recall_at_10, 1.0, "q1 recall@10");
        assert_close(q1.recall_at_100, 1.0, "q1 recall@100");
        assert_close(q1.mrr, 1.0, "q1 RR");
        let q2 = one("q2");
        assert_close(q2.ndcg_at_10, 0.4595559438886381, "q2 nDCG@10");
        assert_close(q2.recall_at_10, 1.0, "q2 recall@10");
        assert_close(q2.recall_at_100, 1.0, "q2 recall@100");
        assert_close(q2.mrr, 0.5, "q2 RR");
        let q3 = one("q3");
        assert_close(q3.ndcg_at_10, 0.0, "q3 nDCG@10");
        assert_close(q3.recall_at_10, 0.0, "q3 recall@10");
        assert_close(q3.recall_at_100, 0.5, "q3 recall@100");
        assert_close(q3.mrr, 1.0 / 15.0, "q3 RR");
    }

    /// q1's run (d3 d4 d1 d2) with d1 judged 1 instead of 2:
    ///   DCG@10 = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    ///   IDCG@10 = 1/log2(2) + 1/log2(3) = 1 + 0.6309297535714575 = 1.6309297535714575
    ///   nDCG@10 = 1.5 / 1.6309297535714575 = 0.9197207891481876 (graded: 0.7601875334318685)
    /// Recall and RR do not look at grades.
    #[test]
    fn grades_change_ndcg_only() {
        let binary: Qrels = [("q1", "d1", 1), ("q1", "d3", 1), ("q1", "d4", 0)]
            .into_iter()
            .map(|(q, d, g)| (q.to_owned(), d.to_owned(), g))
            .collect();
        let run = run(vec![("q1", ids(&["d3", "d4", "d1", "d2"]))]);
        let metrics = evaluate(&binary, &run);
        assert_close(metrics.ndcg_at_10, 0.9197207891481876, "binary nDCG@10");
        assert_close(metrics.recall_at_10, 1.0, "recall@10");
        assert_close(metrics.mrr, 1.0, "RR");
    }

    #[test]
    fn a_repeated_id_counts_once_at_its_first_rank() {
        let data = fixture_dataset();
        let repeated = fixture_run();
        let mut distinct = repeated.clone();
        if let Some(q2) = distinct.get_mut("q2") {
            q2.remove(2);
        }
        assert_eq!(
            evaluate(&data.qrels, &repeated),
            evaluate(&data.qrels, &distinct)
        );
        // A relevant document repeated throughout still counts once.
        let qrels: Qrels = [("q".to_owned(), "a".to_owned(), 1)].into_iter().collect();
        let metrics = evaluate(&qrels, &run(vec![("q", ids(&["a", "a", "a"]))]));
        assert_close(metrics.recall_at_10, 1.0, "recall@10");
        assert_close(metrics.ndcg_at_10, 1.0, "nDCG@10");
    }

    /// q3 missing from the run scores 0 on every metric, so from the fixture means:
    ///   nDCG@10 = (0.7601875334318685 + 0.4595559438886381 + 0) / 3 (unchanged: q3 scored 0)
    ///   recall@100 = (1 + 1 + 0) / 3; MRR@100 = (1 + 0.5 + 0) / 3 = 0.5
    #[test]
    fn a_query_missing_from_the_run_scores_zero() {
        let data = fixture_dataset();
        let mut run = fixture_run();
        run.remove("q3");
        let metrics = evaluate(&data.qrels, &run);
        assert_eq!(metrics.queries, 3);
        assert_close(metrics.ndcg_at_10, 0.4065811591068355, "nDCG@10");
        assert_close(metrics.recall_at_100, 2.0 / 3.0, "recall@100");
        assert_close(metrics.mrr, 0.5, "MRR@100");
        assert_eq!(
            evaluate(&data.qrels, &HashMap::new()),
            Metrics {
                queries: 3,
                ..Metrics::default()
            }
        );
    }

    #[test]
    fn only_queries_with_a_relevant_document_are_averaged() {
        // q0's only judgment is 0; `other` is not judged at all.
        let qrels: Qrels = [("q0", "a", 0), ("q1", "a", 1)]
            .into_iter()
            .map(|(q, d, g)| (q.to_owned(), d.to_owned(), g))
            .collect();
        let run = run(vec![
            ("q0", ids(&["b"])),
            ("q1", ids(&["a"])),
            ("other", ids(&["a"])),
        ]);
        let metrics = evaluate(&qrels, &run);
        assert_eq!(metrics.queries, 1);
        assert_close(metrics.ndcg_at_10, 1.0, "nDCG@10");
        assert_close(metrics.mrr, 1.0, "MRR@100");
        assert_eq!(qrels.evaluated_queries().collect::<Vec<_>>(), ["q1"]);
        assert!(!qrels.is_evaluated("q0"));
        // No query to average over: zeros, not NaN.
        assert_eq!(evaluate(&Qrels::default(), &run), Metrics::default());
    }

    #[test]
    fn documents_below_rank_100_do_not_count() {
        let qrels: Qrels = [("q".to_owned(), "a".to_owned(), 1)].into_iter().collect();
        // a at rank 100: recall@100 = 1, RR = 1/100.
        let at_100 = [unjudged(1..=99), ids(&["a"])].concat();
        let metrics = evaluate(&qrels, &run(vec![("q", at_100)]));
        assert_close(metrics.recall_at_100, 1.0, "recall@100 at rank 100");
        assert_close(metrics.mrr, 0.01, "RR at rank 100");
        // a at rank 101: nothing.
        let at_101 = [unjudged(1..=100), ids(&["a"])].concat();
        let metrics = evaluate(&qrels, &run(vec![("q", at_101)]));
        assert_eq!(metrics.recall_at_100, 0.0);
        assert_eq!(metrics.mrr, 0.0);
    }

    // Readers.

    fn corpus(text: &str) -> Result<Vec<CorpusDoc>, EvalError> {
        parse_corpus(text.as_bytes(), Path::new("corpus.jsonl"))
    }

    fn queries(text: &str) -> Result<Vec<Query>, EvalError> {
        parse_queries(text.as_bytes(), Path::new("queries.jsonl"))
    }

    fn qrels(text: &str) -> Result<Qrels, EvalError> {
        let known =
            queries("{\"_id\": \"q1\", \"text\": \"one\"}\n{\"_id\": \"2\", \"text\": \"two\"}")
                .expect("queries parse");
        parse_qrels(text.as_bytes(), Path::new("qrels.tsv"), &known)
    }

    /// The line and problem of a line error, after checking that it names `file`.
    fn line_error(err: EvalError, file: &str) -> (usize, LineProblem) {
        match err {
            EvalError::Line {
                file: named,
                line,
                problem,
            } => {
                assert_eq!(named, Path::new(file));
                (line, problem)
            }
            other => panic!("expected a line error, got {other}"),
        }
    }

    #[test]
    fn ids_may_be_strings_or_integers() {
        let docs = corpus(concat!(
            "{\"_id\": \"doc-1\", \"title\": \"t\", \"text\": \"a\"}\n",
            "{\"_id\": 42, \"title\": \"t\", \"text\": \"b\"}\n",
            "{\"_id\": -7, \"title\": \"t\", \"text\": \"c\"}\n",
        ))
        .expect("corpus parses");
        let ids: Vec<&str> = docs.iter().map(|doc| doc.id.as_str()).collect();
        assert_eq!(ids, ["doc-1", "42", "-7"]);
        let parsed = queries("{\"_id\": 3, \"text\": \"q\"}").expect("queries parse");
        assert_eq!(parsed[0].id, "3");

        let err = corpus("{\"_id\": 1.5, \"text\": \"a\"}").expect_err("a float id");
        let (line, problem) = line_error(err, "corpus.jsonl");
        assert_eq!(line, 1);
        assert!(
            matches!(&problem, LineProblem::Json { message, .. }
                if message.contains("expected a string or an integer")),
            "{problem}"
        );
    }

    #[test]
    fn titles_may_be_missing_null_or_empty_and_extra_fields_are_ignored() {
        let docs = corpus(concat!(
            "{\"_id\": \"a\", \"text\": \"no title\"}\n",
            "{\"_id\": \"b\", \"title\": null, \"text\": \"null title\"}\n",
            "{\"_id\": \"c\", \"title\": \"\", \"text\": \"empty title\", \"metadata\": {\"x\": [1]}}\n",
            "{\"_id\": \"d\", \"title\": \"T\", \"text\": \"\"}\n",
        ))
        .expect("corpus parses");
        let titles: Vec<&str> = docs.iter().map(|doc| doc.title.as_str()).collect();
        assert_eq!(titles, ["", "", "", "T"]);
        assert_eq!(docs[2].text, "empty title");
        assert_eq!(docs[3].text, "", "empty text is text");
    }

    #[test]
    fn blank_lines_crlf_and_a_byte_order_mark_are_accepted() {
        let docs = corpus("\u{feff}{\"_id\": \"a\", \"text\": \"x\"}\r\n\r\n  \n{\"_id\": \"b\", \"text\": \"y\"}\r\n")
            .expect("corpus parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].text, "y");
        // Blank lines still count in line numbers.
        let err = corpus("{\"_id\": \"a\", \"text\": \"x\"}\n\n\n{").expect_err("bad JSON");
        assert_eq!(line_error(err, "corpus.jsonl").0, 4);
    }

    #[test]
    fn qrels_may_have_a_header_or_not() {
        let with = qrels("query-id\tcorpus-id\tscore\nq1\td1\t1\n2\t7\t0\n").expect("header");
        let without = qrels("q1\td1\t1\n2\t7\t0\n").expect("no header");
        assert_eq!(with, without);
        assert_eq!(with.grade("q1", "d1"), Some(1));
        assert_eq!(with.grade("2", "7"), Some(0));
        // Blank lines, CRLF and spaces around columns.
        let loose =
            qrels("\r\nquery-id\tcorpus-id\tscore\r\n\r\nq1 \t d1\t1\r\n2\t7\t0").expect("loose");
        assert_eq!(loose, with);
        // A first line whose score has a digit is a judgment, so a bad one is an error.
        let err = qrels("q1\td1\t1.0\n").expect_err("float score");
        assert_eq!(
            line_error(err, "qrels.tsv"),
            (1, LineProblem::Score("1.0".to_owned()))
        );
    }

    #[test]
    fn bad_json_names_the_file_and_line() {
        let err = queries("{\"_id\": \"q1\", \"text\": \"ok\"}\n{\"_id\": \"q2\", \"text\": }\n")
            .expect_err("bad JSON");
        assert_eq!(
            err.to_string(),
            "queries.jsonl:2: invalid JSON: expected value (column 23)"
        );
        let err = corpus("[1, 2]\n").expect_err("not an object");
        let (line, problem) = line_error(err, "corpus.jsonl");
        assert_eq!(line, 1);
        assert!(problem.to_string().contains("invalid type"), "{problem}");
        let err = corpus("{\"_id\": \"a\", \"text\": 5}\n").expect_err("text is a number");
        assert_eq!(
            err.to_string(),
            "corpus.jsonl:1: invalid type: integer `5`, expected a string (column 22)"
        );
    }

    #[test]
    fn a_missing_id_or_text_is_an_error() {
        let err =
            corpus("{\"_id\": \"a\", \"text\": \"x\"}\n{\"title\": \"t\", \"text\": \"x\"}\n")
                .expect_err("no _id");
        assert_eq!(err.to_string(), "corpus.jsonl:2: missing \"_id\"");
        let err = queries("{\"_id\": null, \"text\": \"x\"}").expect_err("null _id");
        assert_eq!(
            line_error(err, "queries.jsonl"),
            (1, LineProblem::MissingField("_id"))
        );
        let err = queries("{\"_id\": \"\", \"text\": \"x\"}").expect_err("empty _id");
        assert_eq!(
            line_error(err, "queries.jsonl"),
            (1, LineProblem::EmptyId("\"_id\""))
        );
        let err = corpus("{\"_id\": \"a\", \"contents\": \"x\"}").expect_err("no text");
        assert_eq!(
            line_error(err, "corpus.jsonl"),
            (1, LineProblem::MissingField("text"))
        );
    }

    #[test]
    fn a_duplicate_id_is_an_error() {
        let err = corpus(concat!(
            "{\"_id\": \"a\", \"text\": \"x\"}\n",
            "{\"_id\": \"b\", \"text\": \"y\"}\n",
            "{\"_id\": \"a\", \"text\": \"z\"}\n",
        ))
        .expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "corpus.jsonl:3: duplicate id \"a\" (first on line 1)"
        );
        // A number and a string with the same text are the same id: qrels.tsv cannot tell them
        // apart.
        let err = queries("{\"_id\": 5, \"text\": \"x\"}\n{\"_id\": \"5\", \"text\": \"y\"}\n")
            .expect_err("duplicate");
        assert_eq!(
            line_error(err, "queries.jsonl"),
            (
                2,
                LineProblem::DuplicateId {
                    id: "5".to_owned(),
                    first_line: 1
                }
            )
        );
        let err = qrels("q1\td1\t1\nq1\td1\t2\n").expect_err("judged twice");
        assert_eq!(
            err.to_string(),
            "qrels.tsv:2: query \"q1\" and document \"d1\" are already judged on line 1"
        );
    }

    #[test]
    fn a_qrels_line_needs_three_columns() {
        let err =
            qrels("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n").expect_err("two columns");
        assert_eq!(
            err.to_string(),
            "qrels.tsv:3: expected 3 tab-separated columns (query-id, corpus-id, score), found 2"
        );
        // TREC's `qid 0 docid rel`, space-separated, is one column here.
        let err = qrels("q1 0 d1 1\n").expect_err("TREC layout");
        assert_eq!(line_error(err, "qrels.tsv"), (1, LineProblem::Columns(1)));
        let err = qrels("q1\t\t1\n").expect_err("empty corpus id");
        assert_eq!(
            line_error(err, "qrels.tsv"),
            (1, LineProblem::EmptyId("corpus-id"))
        );
    }

    #[test]
    fn a_qrels_query_missing_from_the_queries_is_an_error() {
        let err = qrels("query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n").expect_err("q9");
        assert_eq!(
            err.to_string(),
            "qrels.tsv:3: query id \"q9\" is not in the queries file"
        );
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_named() {
        let path = fixture("no-such-file.jsonl");
        let err = read_corpus(&path).expect_err("missing file");
        assert!(matches!(&err, EvalError::Read { file, .. } if *file == path));
        assert!(err.to_string().starts_with(&path.display().to_string()));
    }

    #[test]
    fn invalid_utf8_is_a_line_error() {
        let err = parse_corpus(
            &b"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\", \"text\": \"\xff\"}\n"[..],
            Path::new("corpus.jsonl"),
        )
        .expect_err("not UTF-8");
        assert_eq!(line_error(err, "corpus.jsonl"), (2, LineProblem::NotUtf8));
    }
}
