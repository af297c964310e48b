#!/usr/bin/env python3
"""Microsoft Presidio (presidio-analyzer) against the labelled PII/secret corpus.

Scored exactly like `tests/api/filters.rs`: per record, the set of found (type, text[start:end])
pairs against the set of labelled (type, value) pairs; TP = found & expected,
FP = found - expected, FN = expected - found, summed per type over the corpus.
Precision = TP/(TP+FP) (1.0 when nothing was found), recall = TP/(TP+FN), F1 their harmonic mean.

Presidio entity types are mapped to ours (EMAIL_ADDRESS->EMAIL, PHONE_NUMBER->PHONE,
CREDIT_CARD, IBAN_CODE->IBAN, US_SSN, IP_ADDRESS, and its English-registry national ids
UK_NHS and IN_AADHAAR->NATIONAL_ID). Every other type Presidio emits (URL, DATE_TIME, PERSON,
LOCATION, US_BANK_NUMBER, US_DRIVER_LICENSE, CRYPTO, ...) has no exact counterpart in the
corpus labels and is ignored: it is neither a true nor a false positive (DATE_TIME is every
date, not dates of birth; PERSON and LOCATION need a spaCy model, see presidio-compare.sh).
Our secret types, and our types Presidio has no recognizer for, are reported as such, not as
zeros.

Run it through scripts/presidio-compare.sh, which sets up the venv. See --help.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import logging
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Presidio's entity type -> ours.
MAPPING = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "UK_NHS": "NATIONAL_ID",
    "IN_AADHAAR": "NATIONAL_ID",
}
# Our 21 types, in the order of tests/data/pii/README.md.
OUR_TYPES = [
    "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS",
    "NATIONAL_ID", "DATE_OF_BIRTH", "POSTAL_ADDRESS", "PERSON_NAME",
    "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "GCP_API_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN",
    "SLACK_TOKEN", "STRIPE_KEY", "JWT", "PRIVATE_KEY", "DATABASE_URL", "GENERIC_SECRET",
]
# Regions for Presidio's PhoneRecognizer: its default (US GB DE FR IL IN CA BR) plus every
# country whose numbers occur in the corpus (AU JP ES IT NL IE). A region matters for national
# formats; +CC international numbers are found whatever the list.
DEFAULT_REGIONS = "US,CA,GB,IE,DE,FR,ES,IT,NL,IN,AU,JP,BR,IL"
# Tried in order when --model is not given: the first one installed in the venv is used.
MODEL_CANDIDATES = ["en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf"]


def log(msg: str) -> None:
    print(f"[presidio] {msg}", file=sys.stderr, flush=True)


def offline_tldextract(accept_example: bool) -> None:
    """Presidio's EmailRecognizer validates the domain with tldextract, whose default extractor
    downloads the public suffix list at first use. Use the snapshot bundled with the package
    instead, so the run is offline and reproducible. With accept_example, the reserved
    `.example` TLD (RFC 2606, used by most of the corpus's addresses) counts as a suffix."""
    import tldextract

    extractor = tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, extra_suffixes=("example",) if accept_example else ()
    )
    tldextract.extract = extractor
    tldextract.tldextract.TLD_EXTRACTOR = extractor


def build_engine(model: str | None, regions: list[str]):
    """The AnalyzerEngine with Presidio's default recognizer registry, and the mode used."""
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    if model is None:
        model = next((m for m in MODEL_CANDIDATES if spacy.util.is_package(m)), None)

    if model is not None:
        if not spacy.util.is_package(model) and not Path(model).exists():
            sys.exit(f"spaCy model {model} is not installed in this venv")
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
        version = importlib.metadata.version(model) if spacy.util.is_package(model) else "?"
        mode = f"spaCy model {model} {version} (NER + pattern recognizers)"
    else:

        class BlankSpacyNlpEngine(SpacyNlpEngine):
            """spacy.blank("en"): spaCy's English tokenizer, stop words and punctuation, no
            trained components. No NER, so only Presidio's pattern and checksum recognizers
            find anything. A blank pipeline has no lemmatizer (every lemma is ""), so the
            lower-cased token stands in for the lemma: the context enhancer matches context
            words as substrings by default ("numbers" still supports "number")."""

            def load(self) -> None:
                self.nlp = {"en": spacy.blank("en")}

            def _doc_to_nlp_artifact(self, doc, language):
                return NlpArtifacts(
                    entities=[],
                    tokens=doc,
                    tokens_indices=[t.idx for t in doc],
                    lemmas=[t.lemma_ or t.lower_ for t in doc],
                    nlp_engine=self,
                    language=language,
                    scores=[],
                )

        engine = BlankSpacyNlpEngine()
        mode = (
            f"pattern recognizers only: no spaCy model is installed, so the NLP engine is "
            f"spacy.blank(\"en\") (spaCy {spacy.__version__} tokenizer, lower-cased tokens as "
            f"lemmas for context words, no NER)"
        )

    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    analyzer.registry.remove_recognizer("PhoneRecognizer")
    analyzer.registry.add_recognizer(PhoneRecognizer(supported_regions=tuple(regions)))
    return analyzer, mode


def read_corpus(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: {e}")
    return records


def analyze_all(analyzer, records, entities=None):
    """Presidio's results per record (at the default threshold), the wall-clock seconds and the
    CPU seconds of this process (which a busy machine inflates less)."""
    out = []
    t0, c0 = time.perf_counter(), time.process_time()
    for r in records:
        out.append(analyzer.analyze(text=r["text"], language="en", entities=entities))
    return out, time.perf_counter() - t0, time.process_time() - c0


def ratio(a: int, b: int) -> float:
    return 1.0 if b == 0 else a / b


def score(records, results, threshold: float, types: list[str]):
    """Counts per type and the misses, keeping results with score >= threshold.

    Filtering the default-threshold results afterwards equals analysing with
    score_threshold=threshold: Presidio drops a result only for one of the same type that
    contains it with an equal or higher score, which passes any threshold the dropped one does."""
    counts = {t: [0, 0, 0] for t in types}
    misses = []
    for r, res in zip(records, results):
        text = r["text"]
        expected = {(e["type"], e["value"]) for e in r["entities"]}
        found: dict[tuple[str, str], tuple[float, str]] = {}
        for x in res:
            ours = MAPPING.get(x.entity_type)
            if ours is None or x.score < threshold:
                continue
            key = (ours, text[x.start : x.end])
            rec = (x.recognition_metadata or {}).get("recognizer_name", "?")
            if key not in found or found[key][0] < x.score:
                found[key] = (x.score, rec)
        for key, (sc, rec) in sorted(found.items()):
            c = counts.setdefault(key[0], [0, 0, 0])
            if key in expected:
                c[0] += 1
            else:
                c[1] += 1
                misses.append(f"{r['id']} FP {key[0]} {key[1]!r} (score {sc:.2f}, {rec})")
        for key in sorted(expected):
            if key not in found:
                counts.setdefault(key[0], [0, 0, 0])[2] += 1
                if key[0] in MAPPING.values():
                    misses.append(f"{r['id']} FN {key[0]} {key[1]!r}")
    return counts, misses


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p, r = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", nargs="*", help="JSONL corpus files (default: every tests/data/pii/*.jsonl)")
    ap.add_argument("--json", metavar="PATH", help="also write machine-readable results here")
    ap.add_argument("--misses", action="store_true", help="print the FP/FN lists (to stderr)")
    ap.add_argument("--threshold", type=float, default=0.5, help="the second score threshold (default 0.5)")
    ap.add_argument("--regions", default=DEFAULT_REGIONS, help=f"PhoneRecognizer regions (default {DEFAULT_REGIONS})")
    ap.add_argument("--model", help="spaCy model to use (default: the first installed of " + ", ".join(MODEL_CANDIDATES) + ", else none)")
    ap.add_argument("--accept-example-tld", action="store_true", help="let Presidio's EmailRecognizer accept the reserved .example TLD (stock Presidio rejects it)")
    ap.add_argument("--no-subset-throughput", action="store_true", help="skip the second timed pass restricted to the comparable entity types")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    offline_tldextract(args.accept_example_tld)

    paths = [Path(p) for p in args.corpora] or [Path(p) for p in sorted(glob.glob(str(REPO / "tests/data/pii/*.jsonl")))]
    if not paths:
        sys.exit("no corpus files")
    regions = [x.strip().upper() for x in args.regions.split(",") if x.strip()]

    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f}; the throughput shares the CPU with something else")
    t0 = time.perf_counter()
    analyzer, mode = build_engine(args.model, regions)
    version = importlib.metadata.version("presidio-analyzer")
    recognizers = sorted(r.name for r in analyzer.get_recognizers("en"))
    log(f"presidio-analyzer {version}; {mode}; engine built in {time.perf_counter() - t0:.1f} s")
    log(f"{len(recognizers)} recognizers: {', '.join(recognizers)}")
    covered = {MAPPING[e] for e in analyzer.get_supported_entities("en") if e in MAPPING}

    corpora = [(p, read_corpus(p)) for p in paths]
    # Warm-up: every recognizer loads lazily and compiles its regexes at first use.
    analyzer.analyze(text=corpora[0][1][0]["text"], language="en")
    for rec in corpora[0][1][:20]:
        analyzer.analyze(text=rec["text"], language="en")

    cmd = os.environ.get("PRESIDIO_COMPARE_CMD") or " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
    thresholds = [("default", 0.0), (f"{args.threshold:g}", args.threshold)]
    report = {
        "presidio_analyzer_version": version,
        "mode": mode,
        "phone_regions": regions,
        "accept_example_tld": args.accept_example_tld,
        "load_average_at_start": os.getloadavg()[0],
        "recognizers": recognizers,
        "command": cmd,
        "thresholds": [t for _, t in thresholds],
        "ignored_presidio_types": "every Presidio type other than " + ", ".join(MAPPING),
        "files": [],
    }
    total_bytes = total_secs = subset_secs = 0.0
    out = [f"## Presidio {version} on the labelled corpus", ""]
    out.append(f"- Mode: {mode}.")
    out.append(f"- Recognizers: Presidio's default registry ({len(recognizers)}), with PhoneRecognizer regions {','.join(regions)}.")
    out.append("- Presidio types other than " + ", ".join(MAPPING) + " (URL, DATE_TIME, PERSON, LOCATION, US_BANK_NUMBER, US_DRIVER_LICENSE, CRYPTO, …) are ignored: not counted as false positives.")
    out.append(f"- Threshold `default` keeps every result Presidio returns by default (engine threshold 0, no per-recognizer thresholds configured); `≥ {args.threshold:g}` keeps results scoring at least {args.threshold:g} after context enhancement.")
    if args.accept_example_tld:
        out.append("- `--accept-example-tld`: the EmailRecognizer's tldextract accepts the reserved `.example` TLD as a public suffix (stock Presidio does not).")
    out.append(f"- Command: `{cmd}`")
    out.append("")

    for path, records in corpora:
        results, secs, cpu = analyze_all(analyzer, records)
        nbytes = sum(len(r["text"].encode("utf-8")) for r in records)
        sub_secs = None
        if not args.no_subset_throughput:
            _, sub_secs, _ = analyze_all(analyzer, records, entities=list(MAPPING))
            subset_secs += sub_secs
        total_bytes += nbytes
        total_secs += secs
        types = list(OUR_TYPES) + sorted({e["type"] for r in records for e in r["entities"]} - set(OUR_TYPES))
        per_thr = [score(records, results, t, types) for _, t in thresholds]
        try:
            shown = path.resolve().relative_to(REPO)
        except ValueError:
            shown = path
        labelled = defaultdict(int)
        for r in records:
            for e in {(e["type"], e["value"]) for e in r["entities"]}:
                labelled[e[0]] += 1

        out.append(f"### `{shown}` ({len(records)} records, {nbytes:,} bytes of text)")
        out.append("")
        hdr = " | ".join(f"P | R | F1 ({'default' if n == 'default' else '≥ ' + n})" for n, _ in thresholds)
        out.append(f"| type | labelled | {hdr} |")
        out.append("|---|---:|" + "---:|---:|---:|" * len(thresholds))
        fjson = {"path": str(shown), "records": len(records), "bytes": nbytes, "seconds": secs,
                 "cpu_seconds": cpu, "mib_per_s": nbytes / secs / 2**20,
                 "mib_per_cpu_s": nbytes / cpu / 2**20, "types": {}}
        if sub_secs:
            fjson["seconds_six_types_only"] = sub_secs
            fjson["mib_per_s_six_types_only"] = nbytes / sub_secs / 2**20
        micro = [[0, 0, 0] for _ in thresholds]
        for t in types:
            if t not in covered:
                out.append(f"| {t} | {labelled[t]} |" + " no recognizer | | |" * len(thresholds))
                fjson["types"][t] = {"recognizer": False, "labelled": labelled[t]}
                continue
            cells, tj = [], {"recognizer": True, "labelled": labelled[t]}
            for i, ((name, thr), (counts, _)) in enumerate(zip(thresholds, per_thr)):
                tp, fp, fn = counts.get(t, [0, 0, 0])
                for j, v in enumerate((tp, fp, fn)):
                    micro[i][j] += v
                p, r, f = prf(tp, fp, fn)
                cells.append(f"{p:.3f} | {r:.3f} | {f:.3f}")
                tj[name] = {"threshold": thr, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f}
            out.append(f"| {t} | {labelled[t]} | " + " | ".join(cells) + " |")
            fjson["types"][t] = tj
        n6 = sum(labelled[t] for t in MAPPING.values())
        cells = []
        fjson["micro_six_types"] = {}
        for (name, thr), (tp, fp, fn) in zip(thresholds, micro):
            p, r, f = prf(tp, fp, fn)
            cells.append(f"**{p:.3f}** | **{r:.3f}** | **{f:.3f}**")
            fjson["micro_six_types"][name] = {"threshold": thr, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f}
        out.append(f"| **{len(set(MAPPING.values()))} comparable types, micro** | {n6} | " + " | ".join(cells) + " |")
        out.append("")
        tline = f"Throughput: {nbytes / secs / 2**20:.3f} MiB/s ({nbytes / secs / 1e6:.3f} MB/s; {secs:.2f} s for {nbytes:,} bytes, every default recognizer)"
        if sub_secs:
            tline += f"; {nbytes / sub_secs / 2**20:.3f} MiB/s restricted to the comparable entity types"
        out.append(tline + f". One core, wall clock, after warm-up (CPU time: {nbytes / cpu / 2**20:.3f} MiB/s).")
        out.append("")
        emails = {(r["id"], e["value"]) for r in records for e in r["entities"] if e["type"] == "EMAIL"}
        dot_example = sum(1 for _, v in emails if v.lower().endswith(".example"))
        if dot_example and not args.accept_example_tld:
            out.append(
                f"Note: {dot_example} of the {len(emails)} labelled addresses end in the reserved `.example` TLD, "
                "which stock Presidio's EmailRecognizer rejects (tldextract finds no public suffix); "
                "`--accept-example-tld` shows EMAIL as if those TLDs were real."
            )
            out.append("")
        report["files"].append(fjson)

        if args.misses:
            for (name, _), (_, misses) in zip(thresholds, per_thr):
                print(f"--- {shown}: misses at threshold {name} ({len(misses)})", file=sys.stderr)
                for m in misses:
                    print(m, file=sys.stderr)

    if len(corpora) > 1:
        line = f"Throughput over all files: {total_bytes / total_secs / 2**20:.3f} MiB/s ({total_bytes / total_secs / 1e6:.3f} MB/s)"
        if subset_secs:
            line += f"; {total_bytes / subset_secs / 2**20:.3f} MiB/s restricted to the comparable types"
        out.append(line + ".")
        out.append("")
    report["mib_per_s"] = total_bytes / total_secs / 2**20
    if subset_secs:
        report["mib_per_s_six_types_only"] = total_bytes / subset_secs / 2**20

    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
