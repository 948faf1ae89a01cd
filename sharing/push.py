"""``push``: a run folder, a head folder or a bundle to a Hugging Face Hub model repo.

``prepare_push(path)`` does everything up to the upload and touches nothing: it finds what the
folder is (a bundle, a run, a head), runs that kind's own checks (every recorded sha256; a head is
loaded as ``load_head`` loads it; an interrupted run is refused), checks that its ``README.md``
is a Hub card (``huggingface_hub.ModelCard.load`` with ``base_model`` and ``pipeline_tag``), and
lists the files that will go: a run's ``checkpoint/`` (training state, with a pickled optimizer)
and leftover ``*.tmp`` files stay behind, and the records that hold local paths
(``tweetheads_run.json``, ``head.json``, ``train_report.json``) go rewritten by file name
(``portable.py``). ``push(path, repo_id)`` then creates the repo (``create_repo``,
``exist_ok=True``, ``private`` as asked) and uploads a staging folder of links to those files
with ``huggingface_hub.upload_folder``: the endpoint (``HF_ENDPOINT``), the token (``hf auth
login`` or ``HF_TOKEN``) and ``HF_HUB_OFFLINE`` are huggingface_hub's own. A folder whose card
predates Hub cards is refused with the way out (``tweetheads export`` writes fresh cards).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from embed.bundle import is_bundle, verify_bundle
from embed.errors import ModelError
from embed.runs import RUN_MARKER, read_run_info, verify_run

from . import portable

_SKIPPED = ("checkpoint", "checkpoint.old", "checkpoint.tmp")


@dataclass
class PushPlan:
    """What ``push`` would upload: the folder's kind, the files (relative paths) and the rewritten records."""

    folder: Path
    kind: str  # "bundle", "run" or "head"
    files: list[str]
    rewritten: dict[str, dict] = field(default_factory=dict)  # relative path -> the JSON that replaces it
    commit_message: str = ""

    @property
    def bytes(self) -> int:
        """The total size of the files to upload, in bytes."""
        return sum((self.folder / name).stat().st_size for name in self.files)


def prepare_push(path: str | Path) -> PushPlan:
    """Check ``path`` as its kind's loaders do and list what would be uploaded (nothing leaves the machine)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder; push takes a run folder, a head folder or a bundle")
    rewritten = {}
    if is_bundle(folder):
        kind = "bundle"
        verify_bundle(folder)  # written without local paths by export: it goes as it is
    elif (folder / RUN_MARKER).is_file():
        kind = "run"
        info = read_run_info(folder)
        if info.get("interrupted"):
            raise ModelError(f"{folder}: the run was interrupted; finish it with `finetune ... --resume` before "
                             "pushing it")
        verify_run(folder, info)
        rewritten[RUN_MARKER] = portable.run_info(info)
    else:
        from heads import HeadError, load_head
        from heads.base import CONFIG_NAME, REPORT_FILE

        if not (folder / CONFIG_NAME).is_file():
            raise ModelError(f"{folder}: not a run folder ({RUN_MARKER}), a head folder ({CONFIG_NAME}) or a bundle; "
                             "push one of those")
        kind = "head"
        try:
            load_head(folder)
        except HeadError as exc:
            raise ModelError(f"refusing to push {folder}: {exc}") from None
        rewritten[CONFIG_NAME] = portable.head_config(json.loads((folder / CONFIG_NAME).read_text()))
        if (folder / REPORT_FILE).is_file():
            rewritten[REPORT_FILE] = portable.train_report(json.loads((folder / REPORT_FILE).read_text()))
    _check_card(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not _left_behind(p.relative_to(folder)))
    return PushPlan(folder, kind, files, rewritten, f"Upload tweetheads {kind} {folder.name}")


def _left_behind(rel: Path) -> bool:
    return rel.parts[0] in _SKIPPED or rel.name.endswith(".tmp") or rel.parts[0].startswith(".")


def _check_card(folder: Path) -> None:
    from huggingface_hub import ModelCard

    card = folder / "README.md"
    fix = ("it was written before tweetheads made Hub cards: `tweetheads export` writes a bundle with fresh "
           "cards (push that), or train it again")
    if not card.is_file():
        raise ModelError(f"{card}: missing; {fix}")
    try:
        data = ModelCard.load(card).data
    except (ValueError, OSError) as exc:
        raise ModelError(f"{card}: not a readable Hub card ({exc}); {fix}") from None
    if not data.pipeline_tag:
        raise ModelError(f"{card}: no Hub metadata (pipeline_tag); {fix}")


def push(path: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Upload ``path`` (after ``prepare_push``) to the model repo ``repo_id``; returns the commit's URL."""
    plan = prepare_push(path)
    from huggingface_hub import HfApi

    staging = Path(tempfile.mkdtemp(prefix="tweetheads-push-"))
    try:
        for name in plan.files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if name in plan.rewritten:
                portable.write_json(target, plan.rewritten[name])
            else:
                target.symlink_to((plan.folder / name).resolve())
        api = HfApi()
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(repo_id=repo_id, folder_path=staging, repo_type="model",
                                       commit_message=plan.commit_message)
        except Exception as exc:  # noqa: BLE001 - huggingface_hub's and its HTTP client's errors share no base
            raise ModelError(_push_failure(exc, repo_id, api.endpoint)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(commit.commit_url)


def _push_failure(exc: Exception, repo_id: str, endpoint: str) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, OfflineModeIsEnabled):
        return f"cannot push {repo_id!r}: HF_HUB_OFFLINE=1 forbids uploads; unset it and run push again"
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return (f"the Hub at {endpoint} refused {repo_id!r} ({status}: {first}); log in with `hf auth login` "
                    "or set HF_TOKEN to a token that may write there")
        return f"the Hub at {endpoint} refused the upload of {repo_id!r} ({first}); nothing was changed there by push"
    if isinstance(exc, (ValueError, TypeError)):
        return f"cannot push to {repo_id!r}: {first}"
    return f"cannot reach the Hub at {endpoint} to push {repo_id!r} ({type(exc).__name__}: {first}); try again later"
