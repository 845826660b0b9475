"""The operators of rule conditions, one vocabulary for segment rules (domain/segments.py)
and proactive-message rules (domain/proactive.py).

Each kind of rule takes some of them: the GraphQL schema has one enum per kind
(`RuleOperator`, `ProactiveRuleOperator`), both derived from `Operator` in its order.

    >>> [o.name for o in Operator if o in PROACTIVE_OPERATORS][-3:]
    ['NOT_IN', 'MEMBER_OF', 'NOT_MEMBER_OF']
    >>> Operator.MATCHES in SEGMENT_OPERATORS
    False
"""

from __future__ import annotations

from enum import StrEnum


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    MATCHES = "matches"
    IS_SET = "is_set"
    IS_NOT_SET = "is_not_set"
    GREATER_THAN = "greater_than"
    GREATER_OR_EQUAL = "greater_or_equal"
    LESS_THAN = "less_than"
    LESS_OR_EQUAL = "less_or_equal"
    BETWEEN = "between"
    IN = "in"
    NOT_IN = "not_in"
    MEMBER_OF = "member_of"
    NOT_MEMBER_OF = "not_member_of"
    BEFORE = "before"
    AFTER = "after"
    WITHIN_LAST_DAYS = "within_last_days"
    MORE_THAN_DAYS_AGO = "more_than_days_ago"
    # For event.<name> and conversation_count: how many.
    AT_LEAST = "at_least"
    AT_MOST = "at_most"
    EXACTLY = "exactly"


# Wildcard matching of a page's text, and segment membership, are proactive rules' own.
SEGMENT_OPERATORS = frozenset(Operator) - {Operator.MATCHES, Operator.MEMBER_OF, Operator.NOT_MEMBER_OF}
# Ranges, dates and counts are segment rules' own.
PROACTIVE_OPERATORS = frozenset(Operator) - {
    Operator.BETWEEN,
    Operator.BEFORE,
    Operator.AFTER,
    Operator.WITHIN_LAST_DAYS,
    Operator.MORE_THAN_DAYS_AGO,
    Operator.AT_LEAST,
    Operator.AT_MOST,
    Operator.EXACTLY,
}
