"""core.metrics classification section against hand-computed cases."""
import numpy as np
import pytest

from core.metrics import accuracy, confusion_matrix, per_class_report


def test_accuracy_hand_case():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    assert accuracy(np.array([3]), np.array([4])) == 0.0
    assert np.isnan(accuracy([], []))
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


def test_confusion_matrix_rows_true_columns_pred():
    # true: 0 0 1 1 1 2 ; pred: 0 1 1 1 0 2
    cm = confusion_matrix(pred=[0, 1, 1, 1, 0, 2], target=[0, 0, 1, 1, 1, 2], num_classes=4)
    expected = np.array([[1, 1, 0, 0],
                         [1, 2, 0, 0],
                         [0, 0, 1, 0],
                         [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64 and cm.sum() == 6
    with pytest.raises(ValueError):
        confusion_matrix([0, 4], [0, 1], num_classes=4)
    with pytest.raises(ValueError):
        confusion_matrix([-1], [0], num_classes=4)
    np.testing.assert_array_equal(confusion_matrix([], [], 2), np.zeros((2, 2)))


def test_per_class_report_hand_case_and_nan_for_zero_over_zero():
    cm = np.array([[1, 1, 0, 0],
                   [1, 2, 0, 0],
                   [0, 0, 1, 0],
                   [0, 0, 0, 0]])
    r = per_class_report(cm)
    # class 0: tp 1, predicted 2, support 2 -> P 0.5 R 0.5 F1 0.5
    # class 1: tp 2, predicted 3, support 3 -> P 2/3 R 2/3 F1 2/3
    # class 2: perfect; class 3: absent and never predicted -> all NaN, support 0
    np.testing.assert_allclose(r["precision"][:3], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(r["recall"][:3], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(r["f1"][:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(r["precision"][3]) and np.isnan(r["recall"][3]) and np.isnan(r["f1"][3])
    np.testing.assert_array_equal(r["support"], [2, 3, 1, 0])


def test_per_class_report_class_never_predicted_has_f1_zero_not_nan():
    # class 1 is present (support 2) but never predicted: precision undefined (NaN),
    # recall 0, F1 = 2*0 / (0 + 2) = 0 -- "always wrong", not "undefined".
    cm = confusion_matrix(pred=[0, 0, 0], target=[0, 1, 1], num_classes=2)
    r = per_class_report(cm)
    assert np.isnan(r["precision"][1])
    assert r["recall"][1] == 0.0 and r["f1"][1] == 0.0
    np.testing.assert_allclose([r["precision"][0], r["recall"][0], r["f1"][0]], [1 / 3, 1.0, 0.5])
