"""The grading command line: ``python -m musicvae_course.grading {student-versions,run-student-versions,autograde}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .student import make_student_versions


def main(argv=None) -> int:
    """``python -m musicvae_course.grading {student-versions,run-student-versions,autograde} ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m musicvae_course.grading",
        description="Student versions and autograding of the course notebooks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sv = sub.add_parser("student-versions", help="write student versions (or check they are in sync)")
    sv.add_argument("source_dir")
    sv.add_argument("student_dir")
    sv.add_argument("--check", action="store_true", help="only compare; exit 1 when out of sync")
    rs = sub.add_parser(
        "run-student-versions", help="run student versions; exit 1 when a cell other than a graded one fails"
    )
    rs.add_argument("student_dir")
    rs.add_argument("--cell-timeout", type=float, default=120)
    ag = sub.add_parser("autograde", help="grade a folder of submissions: grades.csv + feedback per student")
    ag.add_argument("submissions_dir", help="one folder per student holding their .ipynb files")
    ag.add_argument("--source", required=True, help="folder of the source notebooks (with hidden tests)")
    ag.add_argument("--out", required=True, help="output folder for grades.csv and feedback/")
    ag.add_argument("--cell-timeout", type=float, default=120, help="seconds per cell and per question's tests")
    ag.add_argument("--timeout", type=float, default=1800, help="seconds per notebook, all cells together")
    ag.add_argument("--jobs", type=int, default=None, help="submissions graded in parallel (default: the cores)")
    ag.add_argument("--student", default=None, help="regrade this student only; keep everyone else's grades")
    ag.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        default="auto",
        help="bwrap: require bubblewrap; auto: use it when it works; none: no sandbox (trusted code)",
    )
    ag.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="COURSE_PATH=HOST_PATH",
        help="extra file or folder the notebooks read, copied to COURSE_PATH of each kernel's layout",
    )
    args = parser.parse_args(argv)

    if args.command == "student-versions":
        problems = make_student_versions(args.source_dir, args.student_dir, check=args.check)
        for problem in problems:
            print(problem, file=sys.stderr)
        if args.check:
            print(
                "student versions in sync"
                if not problems
                else f"{len(problems)} difference(s): run python -m musicvae_course.grading student-versions "
                f"{args.source_dir} {args.student_dir}",
                file=sys.stderr,
            )
            return 1 if problems else 0
        return 1 if any("not processed" in p for p in problems) else 0

    from . import autograde, runs  # imported here: they pull in nbclient/jupyter_client

    if args.command == "run-student-versions":
        bad = 0
        paths = sorted(Path(args.student_dir).glob("*.ipynb"))
        if not paths:
            print(f"no notebooks in {args.student_dir}", file=sys.stderr)
            return 1
        for path in paths:
            failures = runs.ungraded_failures(path, cell_timeout=args.cell_timeout)
            for failure in failures:
                print(f"{path}: {failure}", file=sys.stderr)
            bad += len(failures)
            print(f"{path}: {'ok' if not failures else f'{len(failures)} ungraded cell(s) fail'}", file=sys.stderr)
        return 1 if bad else 0

    grades = autograde.autograde(
        args.submissions_dir,
        args.source,
        args.out,
        cell_timeout=args.cell_timeout,
        timeout=args.timeout,
        jobs=args.jobs,
        student=args.student,
        sandbox=args.sandbox,
        data=dict(item.split("=", 1) for item in args.data),
        log=lambda line: print(line, file=sys.stderr),
    )
    print(f"{len(grades)} notebook grade(s) in {Path(args.out) / 'grades.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
