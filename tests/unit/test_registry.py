from datetime import date

from dagster_project.lib.model_store.store import ModelStore


def fit_counter():
    calls = []

    def fit():
        calls.append(1)
        return {"weights": [1, 2]}, {"k": 2}

    return fit, calls


def test_resolve_fits_once_then_reuses_the_version_trained_up_to_the_day(tmp_path):
    store = ModelStore(tmp_path)
    fit, calls = fit_counter()

    first, fitted = store.resolve("m", date(2024, 1, 10), "abc", refit=False, fit=fit)
    again, fitted_again = store.resolve("m", date(2024, 1, 12), "abc", refit=False, fit=fit)

    assert fitted and not fitted_again and len(calls) == 1
    assert again == first
    assert first.version == "m-20240110-abc"
    assert store.load(first) == {"weights": [1, 2]}


def test_a_backfill_never_uses_a_model_trained_on_later_data(tmp_path):
    store = ModelStore(tmp_path)
    fit, _ = fit_counter()
    store.resolve("m", date(2024, 1, 10), "abc", refit=False, fit=fit)

    earlier, fitted = store.resolve("m", date(2024, 1, 5), "abc", refit=False, fit=fit)

    assert fitted and earlier.as_of == date(2024, 1, 5)
    assert store.latest_as_of("m", date(2024, 1, 9), "abc") == earlier


def test_a_changed_spec_or_refit_makes_a_new_version(tmp_path):
    store = ModelStore(tmp_path)
    fit, calls = fit_counter()
    store.resolve("m", date(2024, 1, 10), "abc", refit=False, fit=fit)

    other_spec, fitted = store.resolve("m", date(2024, 1, 11), "def", refit=False, fit=fit)
    refit, refitted = store.resolve("m", date(2024, 1, 11), "def", refit=True, fit=fit)

    assert fitted and refitted and len(calls) == 3
    assert other_spec.version == refit.version == "m-20240111-def"  # same data, same spec, same id
    assert [v.spec_hash for v in store.versions("m")] == ["abc", "def"]


def test_a_version_without_its_card_is_ignored(tmp_path):
    store = ModelStore(tmp_path)
    (tmp_path / "m" / "m-20240101-abc").mkdir(parents=True)
    (tmp_path / "m" / "m-20240101-abc" / "model.pkl").write_bytes(b"partial")

    assert store.versions("m") == []


def test_a_refused_candidate_is_kept_but_never_scores(tmp_path):
    store = ModelStore(tmp_path)
    fit, calls = fit_counter()
    good, _ = store.resolve("m", date(2024, 1, 1), "abc", refit=False, fit=fit, gate=None)
    refused, fitted = store.resolve(
        "m", date(2024, 1, 8), "abc", refit=True, fit=fit, gate=lambda model, metrics: False
    )

    assert fitted and good.promoted and not refused.promoted
    assert store.latest_as_of("m", date(2024, 1, 9), "abc") == refused
    assert store.latest_as_of("m", date(2024, 1, 9), "abc", promoted_only=True) == good
    # the refused version exists for its day: no refit every day until the next scheduled one
    again, fitted_again = store.resolve("m", date(2024, 1, 9), "abc", refit=False, fit=fit)
    assert again == refused and not fitted_again and len(calls) == 2


def test_promoting_a_candidate_rewrites_its_card(tmp_path):
    store = ModelStore(tmp_path)
    fit, _ = fit_counter()
    candidate, _ = store.resolve(
        "m", date(2024, 1, 8), "abc", refit=False, fit=fit, gate=lambda model, metrics: False
    )
    assert store.latest_as_of("m", date(2024, 1, 8), "abc", promoted_only=True) is None

    promoted = store.set_promoted(candidate, True)

    assert promoted.promoted and store.versions("m") == [promoted]
    assert store.latest_as_of("m", date(2024, 1, 8), "abc", promoted_only=True) == promoted


def test_any_spec_lookup_skips_refused_candidates(tmp_path):
    store = ModelStore(tmp_path)
    fit, _ = fit_counter()
    old, _ = store.resolve("m", date(2024, 1, 1), "abc", refit=False, fit=fit)
    store.resolve("m", date(2024, 1, 5), "def", refit=False, fit=fit, gate=lambda m, x: False)

    assert store.latest_as_of("m", date(2024, 1, 6), None).spec_hash == "def"
    assert store.latest_as_of("m", date(2024, 1, 6), None, promoted_only=True) == old
    assert store.latest_as_of("m", date(2024, 1, 6), "abc", promoted_only=True) == old
    assert store.latest_as_of("m", date(2024, 1, 6), "def", promoted_only=True) is None
