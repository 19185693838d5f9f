"""Command line: ``python -m landmark_study <command>``.

Commands
  run CONFIG.yaml [--store DIR] [--set key=value ...]   train one run (or read it from the store)
  sweep PARAMS.yaml [--workers N] [--scheduler ADDR]    a chapter's grid on dask
  chapter NAME [--profile quick|full|paper]             execute one chapter notebook
  book [--profile full]                                 execute every chapter and build the HTML book
  params check FILE [FILE ...]                          validate params files
  data fetch NAME [--from URL|PATH]                     download/verify/extract a real dataset
  bench [--json] [--quick] [--save] [--chapters]       performance figures
  claims [--chapter NAME] [--profile P] [--format table|csv|json]   paper-vs-ours verdicts
  profile CHAPTER [--profile full] [--steps N] [--method M ...] [--json] [--save]   where training time goes
  verify CHAPTER [--profile full] [--runs N] [--key K ...]   retrain stored runs from scratch, compare results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def _parse_set(items: list[str]) -> dict[str, object]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"--set {it!r}: expected key=value")
        k, v = it.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m landmark_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="train one run config")
    p.add_argument("config")
    p.add_argument("--store")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--force", action="store_true")

    p = sub.add_parser("sweep", help="run a chapter's grid")
    p.add_argument("params")
    p.add_argument("--workers", type=int)
    p.add_argument("--scheduler")
    p.add_argument("--store")

    p = sub.add_parser("chapter", help="execute one chapter")
    p.add_argument("name")
    p.add_argument("--profile", default="quick", choices=("quick", "full", "paper"))
    p.add_argument("--out", default="_build/executed/book")

    p = sub.add_parser("book", help="execute all chapters and build the book")
    p.add_argument("--profile", default="full", choices=("quick", "full", "paper"))
    p.add_argument("--chapters", nargs="+", help="only these chapters (default: every chapter in _toc.yml)")

    p = sub.add_parser("params", help="params files")
    p.add_argument("action", choices=("check",))
    p.add_argument("files", nargs="+")

    p = sub.add_parser("data", help="real datasets")
    p.add_argument("action", choices=("fetch", "list"))
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("bench", help="performance figures")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke test)")
    p.add_argument("--save", action="store_true", help="also write book/results/bench.json (the status page shows it)")
    p.add_argument("--chapters", action="store_true",
                   help="only time every chapter notebook at its quick profile (papermill, empty store)")

    p = sub.add_parser("claims", help="paper-vs-ours verdicts from the results store")
    p.add_argument("--chapter")
    p.add_argument("--profile", default="full", choices=("quick", "full", "paper"))
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.add_argument("--store", help="results store folder (default: the profile's)")

    p = sub.add_parser("profile", help="cProfile a short copy of one run per method of a chapter")
    p.add_argument("chapter")
    p.add_argument("--profile", default="full", choices=("quick", "full", "paper"),
                   help="which params/CHAPTER/PROFILE.yaml grid to take the runs from")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--method", nargs="+", help="only these methods (default: every method of the grid)")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", action="store_true", help="merge into book/results/profile.json (the status page shows it)")

    p = sub.add_parser("verify", help="retrain stored runs from scratch in a throwaway store and compare")
    p.add_argument("chapter")
    p.add_argument("--profile", default="full", choices=("quick", "full", "paper"))
    p.add_argument("--runs", type=int, default=3, help="how many runs (the cheapest stored ones)")
    p.add_argument("--key", nargs="+", help="these run keys instead")
    p.add_argument("--scratch", help="folder for the retrained runs (default: a new temporary folder)")

    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            from .config import load_run_config
            from .runs import ResultsStore, default_store, run

            cfg = load_run_config(args.config)
            if args.set:
                cfg = cfg.with_overrides(**_parse_set(args.set))
            store = ResultsStore(args.store) if args.store else default_store("full")
            res = run(cfg, store, force=args.force)
            print(yaml.safe_dump({"key": res.key, "final": res.final}, sort_keys=False))
        elif args.cmd == "sweep":
            from .sweep import sweep_params_file

            rep = sweep_params_file(args.params, workers=args.workers, scheduler=args.scheduler,
                                    store_root=args.store)
            print(rep.summary())
            for k, err in rep.failed.items():
                print(f"  failed {k}: {err}")
            return 1 if rep.failed else 0
        elif args.cmd == "verify":
            from .verify import report, verify_chapter

            rows = verify_chapter(args.chapter, args.profile, args.runs, args.key, args.scratch)
            print(report(rows))
            return 0 if all(r["identical"] for r in rows) else 1
        elif args.cmd == "chapter":
            from .book import execute_chapter

            st = execute_chapter(args.name, args.profile, Path(args.out))
            if not st.ok:
                print(st.message, file=sys.stderr)
                return 1
            print(f"{args.name} ({args.profile}) ok in {st.seconds:.1f} s -> {args.out}/{args.name}.ipynb")
        elif args.cmd == "book":
            from .book import ChapterFailed, build

            try:
                build(args.profile, args.chapters)
            except ChapterFailed as e:
                print(str(e), file=sys.stderr)
                return 1
        elif args.cmd == "params":
            from .config import load_chapter_params

            for f in args.files:
                load_chapter_params(Path(f).parent.name, f)
                print(f"{f}: ok")
        elif args.cmd == "data":
            from .data import fetch as fetch_mod

            if args.action == "list":
                from .data.manifests import list_manifests

                for name in list_manifests():
                    print(name)
            else:
                return fetch_mod.cli_fetch(args.rest)
        elif args.cmd == "profile":
            import json

            from .profiling import format_profile, profile_config, representative_configs

            params_file = Path("params") / args.chapter / f"{args.profile}.yaml"
            if not params_file.exists():
                raise SystemExit(f"{params_file}: no such params file (chapter {args.chapter!r}, profile {args.profile!r})")
            out = []
            for cfg in representative_configs(args.chapter, str(params_file), args.method):
                res = profile_config(cfg, steps=args.steps, top=args.top)
                out.append(res)
                if not args.json:
                    print(format_profile(res), flush=True)
            if args.json:
                print(json.dumps(out, indent=1))
            if args.save:
                from .paths import REPO_ROOT
                from .profiling import save_profiles

                save_profiles(args.chapter, out, REPO_ROOT / "book" / "results" / "profile.json")
        elif args.cmd == "claims":
            from .claims import claims_table, format_table
            from .runs import ResultsStore

            df = claims_table(args.chapter, args.profile, ResultsStore(args.store) if args.store else None)
            print(format_table(df, args.format))
        elif args.cmd == "bench":
            from .bench import main as bench_main

            return bench_main(as_json=args.json, quick=args.quick, save=args.save, chapters=args.chapters)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
