"""``python -m visrec.export RUN_DIR [--ckpt tested|best|last|refit|PATH] [--out DIR] [--feature-cache-dir DIR]``:
write a serving bundle."""
import argparse
import sys

from visrec.data.errors import DataError


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m visrec.export", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--ckpt", default="tested", help="tested (refit.ckpt if the run has one, else best.ckpt), best, last, refit or a path")
    parser.add_argument("--out", default=None, help="bundle directory (default: RUN_DIR/export)")
    parser.add_argument("--feature-cache-dir", default=None,
                        help="the feature cache to read (default: the one the run's config.yaml names; for a run moved with its cache)")
    args = parser.parse_args()
    from visrec.export import ExportError
    from visrec.pipeline.exporting import export_run
    from visrec.utils.atomic import WriteError

    try:
        print(f"bundle written to {export_run(args.run_dir, args.ckpt, args.out, args.feature_cache_dir)}")
    except (DataError, ExportError, WriteError) as error:  # WriteError: a full disk, a quota, an unwritable folder
        print(f"export: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
