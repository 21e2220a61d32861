"""The runbook as pure functions: assess() reads a ticket, plan() says what is due at ``now``."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from automation.model import Action, Comment, Episode, Snapshot, Stamp, State, Step
from automation.templates import REGISTRY, Visibility
from automation.workflow import (
    ACKNOWLEDGED_TAG,
    CLOSED_TAG,
    FOLLOWED_UP_TAG,
    Policy,
    assess,
    plan,
    step_done,
)
from tests.factories import (
    AGENT_ID,
    CC_ID,
    CUSTOMER_ID,
    EPISODE_ID,
    TICKET_ID,
    admin,
    agent,
    at,
    bot,
    cc,
    customer,
    default_people,
    description,
    internal_note,
    make_snapshot,
    public_reply,
)

POLICY = Policy()  # the runbook's 15 + 15 minutes
FIFTEEN = timedelta(minutes=15)
UNKNOWN_AUTHOR_ID = 4242  # an id missing from the snapshot's people


def contacted(*later, done=(Step.ACKNOWLEDGE,), contact_minute=2, **ticket) -> Snapshot:
    """An urgent ticket the bot acknowledged ``contact_minute`` minutes after it was opened."""
    comments = [description(), public_reply(bot(), at(contact_minute)), *later]
    return make_snapshot(comments, done=done, **ticket)


def followed_up(*later, done=(Step.ACKNOWLEDGE, Step.FOLLOW_UP), **ticket) -> Snapshot:
    """Acknowledged at minute 2 and followed up at minute 17; nobody has answered."""
    return contacted(public_reply(bot(), at(17)), *later, done=done, **ticket)


def decide(snapshot: Snapshot, now, policy: Policy = POLICY):
    assessment = assess(snapshot, now, policy)
    return assessment, plan(assessment, now, snapshot)


# Acknowledgement ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["new", "open", "pending", "hold"])
def test_new_urgent_ticket_is_acknowledged_at_once(status):
    # given an urgent ticket with only the customer's description
    snapshot = make_snapshot([description()], status=status, created_at=at(0))

    # when it is read the moment it was opened
    assessment, action = decide(snapshot, now=at(0))

    # then the acknowledgement is due right away, with its marker tag and no priority change
    assert assessment.state is State.NEW
    assert assessment.next_step is Step.ACKNOWLEDGE
    assert assessment.due_at == at(0)
    assert assessment.contact_at is None
    assert action == Action(ticket_id=TICKET_ID, step=Step.ACKNOWLEDGE,
                            template="acknowledgement", tags_to_add=(ACKNOWLEDGED_TAG,),
                            priority=None, episode=EPISODE_ID)


def test_acknowledgement_is_still_due_when_the_ticket_is_read_late():
    # given an urgent ticket opened at 09:00, last updated at 09:30, that nobody has answered
    snapshot = make_snapshot([description()], updated_at=at(30))

    # when the worker first sees it 40 minutes after it was opened
    assessment, action = decide(snapshot, now=at(40))

    # then it acknowledges (timers only start at contact), due since the ticket was opened
    assert assessment.state is State.NEW
    assert assessment.due_at == at(0)
    assert action is not None and action.step is Step.ACKNOWLEDGE


@pytest.mark.parametrize("engineer", [agent(), admin(), bot()], ids=["agent", "admin", "bot"])
def test_public_comment_by_an_agent_is_contact_so_no_acknowledgement(engineer):
    # given a human (or our own) public answer two minutes after the ticket was opened
    snapshot = make_snapshot([description(), public_reply(engineer, at(2))])

    # when the ticket is read a minute later
    assessment, action = decide(snapshot, now=at(3))

    # then contact is recorded, no acknowledgement is planned and the follow-up waits
    assert assessment.state is State.AWAITING_CUSTOMER
    assert assessment.contact_at == at(2)
    assert assessment.contact_by == engineer.id
    assert assessment.next_step is Step.FOLLOW_UP
    assert action is None


def test_contact_is_the_first_public_agent_comment():
    # given two public agent comments after the description
    snapshot = make_snapshot([description(), public_reply(agent(), at(4)),
                              public_reply(bot(), at(6))])

    # when assessed
    assessment = assess(snapshot, at(7), POLICY)

    # then contact is the earlier one, and the follow-up counts from it
    assert assessment.contact_at == at(4)
    assert assessment.contact_by == agent().id
    assert assessment.due_at == at(4) + FIFTEEN


def test_internal_agent_note_is_not_contact():
    # given an agent who only wrote an internal note
    snapshot = make_snapshot([description(), internal_note(agent(), at(1))])

    # when assessed
    assessment, action = decide(snapshot, now=at(2))

    # then the customer has not been contacted: acknowledge
    assert assessment.state is State.NEW
    assert assessment.contact_at is None
    assert action is not None and action.step is Step.ACKNOWLEDGE


@pytest.mark.parametrize("opener", [agent(), bot()], ids=["agent", "bot"])
def test_description_is_never_contact_even_when_written_by_an_agent(opener):
    # given a ticket an agent opened on the customer's behalf (public description by an agent)
    snapshot = make_snapshot([description(opener)])

    # when assessed
    assessment, action = decide(snapshot, now=at(1))

    # then the description does not count as contact
    assert assessment.state is State.NEW
    assert assessment.contact_at is None
    assert action is not None and action.step is Step.ACKNOWLEDGE


def test_acknowledged_stamp_without_visible_contact_is_not_acknowledged_twice():
    # given our acknowledgement's stamp but no comment visible as an agent's
    # (e.g. the author could not be looked up)
    snapshot = make_snapshot([description(), public_reply(UNKNOWN_AUTHOR_ID, at(1))],
                             done=(Step.ACKNOWLEDGE,))

    # when assessed long after
    assessment, action = decide(snapshot, now=at(60))

    # then nothing is due: never a second acknowledgement
    assert assessment.state is State.NEW
    assert assessment.next_step is None
    assert action is None


# Follow-up ------------------------------------------------------------------------------------


def test_follow_up_waits_fifteen_minutes_after_contact():
    # given contact at minute 2 and no reply
    snapshot = contacted()
    due = at(2) + FIFTEEN

    # when read one second before fifteen minutes have passed
    early, early_action = decide(snapshot, now=due - timedelta(seconds=1))
    # and when read at exactly fifteen minutes
    on_time, on_time_action = decide(snapshot, now=due)

    # then it is not due at 14:59 but is due at 15:00, with the follow-up's tag
    assert early.state is State.AWAITING_CUSTOMER
    assert early.due_at == due
    assert early_action is None
    assert on_time_action == Action(ticket_id=TICKET_ID, step=Step.FOLLOW_UP,
                                    template="follow_up", tags_to_add=(FOLLOWED_UP_TAG,),
                                    priority=None, episode=EPISODE_ID)


def test_follow_up_counts_from_contact_not_from_ticket_creation():
    # given a ticket opened at 09:00 and first answered by an agent at 09:10
    snapshot = contacted(contact_minute=10)

    # when read 15 minutes after creation, then 15 minutes after contact
    _, at_creation_plus_15 = decide(snapshot, now=at(15))
    _, at_contact_plus_15 = decide(snapshot, now=at(25))

    # then only the second read follows up
    assert at_creation_plus_15 is None
    assert at_contact_plus_15 is not None and at_contact_plus_15.step is Step.FOLLOW_UP


def test_follow_up_and_close_delays_come_from_the_policy():
    # given a non-default policy
    policy = Policy(follow_up_after=timedelta(minutes=7), close_after=timedelta(minutes=11))

    # when a contacted ticket and a followed-up ticket are assessed with it
    awaiting = assess(contacted(), at(3), policy)
    after_follow_up = assess(followed_up(), at(18), policy)

    # then each due time is the policy's delay after the relevant comment
    assert awaiting.next_step is Step.FOLLOW_UP
    assert awaiting.due_at == at(2) + timedelta(minutes=7)
    assert after_follow_up.next_step is Step.CLOSE
    assert after_follow_up.due_at == at(17) + timedelta(minutes=11)


def test_a_second_agent_comment_is_not_a_customer_reply():
    # given contact, then another public agent comment, no customer answer
    snapshot = contacted(public_reply(agent(), at(5)))

    # when fifteen minutes after contact
    assessment, action = decide(snapshot, now=at(17))

    # then the timers still run from the contact
    assert assessment.state is State.AWAITING_CUSTOMER
    assert action is not None and action.step is Step.FOLLOW_UP


# Close ----------------------------------------------------------------------------------------


def test_close_is_due_fifteen_minutes_after_the_follow_up_and_steps_down_to_high():
    # given a follow-up posted at minute 17 and still no reply
    snapshot = followed_up()
    due = at(17) + FIFTEEN

    # when read just before and exactly at fifteen minutes after the follow-up
    early, early_action = decide(snapshot, now=due - timedelta(seconds=1))
    on_time, on_time_action = decide(snapshot, now=due)

    # then the close waits, then comes with priority high and its marker tag
    assert early.state is State.FOLLOWED_UP
    assert early.next_step is Step.CLOSE
    assert early.due_at == due
    assert early_action is None
    assert on_time_action == Action(ticket_id=TICKET_ID, step=Step.CLOSE,
                                    template="bridge_closed", tags_to_add=(CLOSED_TAG,),
                                    priority="high", episode=EPISODE_ID)


def test_close_counts_from_the_last_public_agent_comment():
    # given an agent who wrote publicly after the follow-up
    snapshot = followed_up(public_reply(agent(), at(25)))

    # when fifteen minutes after the follow-up, then fifteen after the agent's comment
    _, after_follow_up = decide(snapshot, now=at(32))
    assessment, after_last_word = decide(snapshot, now=at(40))

    # then the bridge closes a full interval after our last public word
    assert assessment.due_at == at(25) + FIFTEEN
    assert after_follow_up is None
    assert after_last_word is not None and after_last_word.step is Step.CLOSE


def test_internal_note_after_the_follow_up_does_not_delay_the_close():
    # given an agent's internal note after the follow-up
    snapshot = followed_up(internal_note(agent(), at(30)))

    # when fifteen minutes after the follow-up
    assessment, action = decide(snapshot, now=at(32))

    # then the close is due as if the note were not there
    assert assessment.due_at == at(17) + FIFTEEN
    assert action is not None and action.step is Step.CLOSE


# The customer answers -------------------------------------------------------------------------


REPLIERS = [pytest.param(customer(), id="requester"), pytest.param(cc(), id="cc")]


@pytest.mark.parametrize("replier", REPLIERS)
def test_customer_reply_before_the_follow_up_stops_the_timers(replier):
    # given a public end-user reply five minutes after contact
    snapshot = contacted(public_reply(replier, at(7)))

    # when assessed well after the follow-up and close would have been due
    assessment, action = decide(snapshot, now=at(120))

    # then the customer is engaged and nothing is due
    assert assessment.state is State.ENGAGED
    assert assessment.replied_at == at(7)
    assert assessment.next_step is None
    assert assessment.due_at is None
    assert action is None


@pytest.mark.parametrize("replier", REPLIERS)
def test_customer_reply_after_the_follow_up_stops_the_close(replier):
    # given a follow-up at minute 17 and an end-user reply at minute 20
    snapshot = followed_up(public_reply(replier, at(20)))

    # when assessed after the close would have been due
    assessment, action = decide(snapshot, now=at(60))

    # then no close: the customer is engaged
    assert assessment.state is State.ENGAGED
    assert assessment.replied_at == at(20)
    assert assessment.next_step is None
    assert action is None


def test_customer_reply_at_the_same_instant_as_the_due_time_still_stops_the_follow_up():
    # given a reply that arrived exactly when the follow-up became due
    snapshot = contacted(public_reply(customer(), at(2) + FIFTEEN))

    # when read at that instant
    assessment, action = decide(snapshot, now=at(2) + FIFTEEN)

    # then the reply wins
    assert assessment.state is State.ENGAGED
    assert action is None


def test_customer_comment_before_contact_does_not_stop_the_timers():
    # given the customer added a public comment before anyone answered
    snapshot = make_snapshot([description(), public_reply(customer(), at(1)),
                              public_reply(agent(), at(2))])

    # when fifteen minutes after contact
    assessment, action = decide(snapshot, now=at(17))

    # then the follow-up is due: only replies after contact count
    assert assessment.state is State.AWAITING_CUSTOMER
    assert assessment.replied_at is None
    assert action is not None and action.step is Step.FOLLOW_UP


def test_customer_comment_before_contact_does_not_prevent_the_acknowledgement():
    # given the customer added to the ticket before anyone answered
    snapshot = make_snapshot([description(), public_reply(cc(), at(1))])

    # when assessed
    assessment, action = decide(snapshot, now=at(1))

    # then it is still a new emergency to acknowledge, due since it was opened
    assert assessment.state is State.NEW
    assert assessment.due_at == at(0)
    assert action is not None and action.step is Step.ACKNOWLEDGE


# Authors we could not look up -----------------------------------------------------------------


def test_reply_by_an_author_missing_from_people_counts_as_the_customer():
    # given a public comment after contact by someone not in the snapshot's people
    snapshot = contacted(public_reply(UNKNOWN_AUTHOR_ID, at(5)))
    assert UNKNOWN_AUTHOR_ID not in snapshot.people

    # when assessed after the follow-up would be due
    assessment, action = decide(snapshot, now=at(30))

    # then the timers stop (the safe side)
    assert assessment.state is State.ENGAGED
    assert assessment.replied_at == at(5)
    assert action is None


def test_public_comment_by_an_author_missing_from_people_is_not_contact():
    # given the only answer is by someone we could not look up
    snapshot = make_snapshot([description(), public_reply(UNKNOWN_AUTHOR_ID, at(2))])

    # when assessed
    assessment, action = decide(snapshot, now=at(3))

    # then nobody has made contact: acknowledge
    assert assessment.state is State.NEW
    assert assessment.contact_at is None
    assert action is not None and action.step is Step.ACKNOWLEDGE


def test_contact_by_an_agent_missing_from_people_is_invisible_but_the_stamp_stops_a_second_ack():
    # given the bot's acknowledgement, whose author is missing from people
    people = {pid: p for pid, p in default_people().items() if pid != bot().id}
    snapshot = make_snapshot([description(), public_reply(bot(), at(2))], people=people,
                             done=(Step.ACKNOWLEDGE,))

    # when assessed
    assessment, action = decide(snapshot, now=at(30))

    # then no contact is seen and nothing is posted
    assert assessment.contact_at is None
    assert action is None


# Tickets the workflow leaves alone ------------------------------------------------------------


def _stages():
    return [
        pytest.param(lambda **t: make_snapshot([description()], **t), id="new"),
        pytest.param(lambda **t: contacted(**t), id="awaiting-customer"),
        pytest.param(lambda **t: followed_up(**t), id="followed-up"),
    ]


@pytest.mark.parametrize("status", ["solved", "closed"])
@pytest.mark.parametrize("build", _stages())
def test_solved_and_closed_tickets_are_never_touched(status, build):
    # given an urgent ticket at any stage that has been solved or closed
    snapshot = build(status=status)

    # when assessed long after every timer
    assessment, action = decide(snapshot, now=at(600))

    # then it is SOLVED with nothing due
    assert assessment.state is State.SOLVED
    assert assessment.next_step is None
    assert action is None


@pytest.mark.parametrize("priority", ["high", "normal", "low", None])
@pytest.mark.parametrize("build", _stages())
def test_non_urgent_tickets_are_not_emergencies(priority, build):
    # given a ticket at any stage whose priority is not urgent
    snapshot = build(priority=priority)

    # when assessed long after every timer
    assessment, action = decide(snapshot, now=at(600))

    # then nothing is due
    assert assessment.state is State.NOT_URGENT
    assert assessment.next_step is None
    assert action is None


def test_ticket_closed_to_high_in_this_emergency_gets_no_more_steps():
    # given a ticket we stepped down in this emergency (priority high since)
    snapshot = followed_up(done=(Step.ACKNOWLEDGE, Step.FOLLOW_UP, Step.CLOSE),
                           priority="high")

    # when assessed long after
    assessment, action = decide(snapshot, now=at(600))

    # then nothing more is due
    assert assessment.state is State.CLOSED_TO_HIGH
    assert assessment.next_step is None
    assert action is None


def test_closed_to_high_stamp_alone_prevents_an_acknowledgement():
    # given a ticket whose audits stamp the bridge closed in this emergency, no visible contact
    snapshot = make_snapshot([description()], done=(Step.CLOSE,))

    # when assessed
    assessment, action = decide(snapshot, now=at(1))

    # then nothing is posted
    assert assessment.state is State.CLOSED_TO_HIGH
    assert action is None


# step_done ------------------------------------------------------------------------------------


def test_acknowledge_is_not_done_on_a_fresh_ticket():
    assert step_done(make_snapshot([description()]), Step.ACKNOWLEDGE) is False


def test_acknowledge_is_done_once_an_agent_made_contact_even_without_the_tag():
    # given a human agent's public answer and no tag
    snapshot = make_snapshot([description(), public_reply(agent(), at(1))])

    # then acknowledging is done
    assert step_done(snapshot, Step.ACKNOWLEDGE) is True


def test_acknowledge_is_done_when_its_stamp_is_in_the_audits():
    # given the acknowledgement's stamp but no visible contact
    snapshot = make_snapshot([description()], done=(Step.ACKNOWLEDGE,))

    # then acknowledging is done
    assert step_done(snapshot, Step.ACKNOWLEDGE) is True


def test_acknowledge_is_not_done_by_an_internal_note_or_the_description():
    # given an agent-written description and an agent's internal note
    snapshot = make_snapshot([description(agent()), internal_note(agent(), at(1))])

    # then acknowledging is not done
    assert step_done(snapshot, Step.ACKNOWLEDGE) is False


@pytest.mark.parametrize(("step", "tag"), [(Step.FOLLOW_UP, FOLLOWED_UP_TAG),
                                           (Step.CLOSE, CLOSED_TAG)])
def test_follow_up_and_close_are_done_only_when_their_stamp_is_in_the_audits(step, tag):
    # given a contacted ticket with later public agent comments: without the stamp (but with
    # the marker tag, as a macro or a copy may leave it), then with the stamp (tag removed)
    comments = (public_reply(agent(), at(18)), public_reply(agent(), at(33)))
    tag_only = contacted(*comments, tags=(ACKNOWLEDGED_TAG, tag))
    stamped = contacted(*comments, done=(Step.ACKNOWLEDGE, step), tags=())

    # then only the stamp marks the step as done
    assert step_done(tag_only, step) is False
    assert step_done(stamped, step) is True


# The contract with the templates --------------------------------------------------------------


@pytest.mark.parametrize("build", [
    pytest.param(lambda: make_snapshot([description()]), id="acknowledge"),
    pytest.param(lambda: contacted(), id="follow-up"),
    pytest.param(lambda: followed_up(), id="close"),
])
def test_every_planned_step_posts_a_registered_public_template(build):
    # given a ticket at the stage where a step is due
    _, action = decide(build(), now=at(600))

    # then the step's template exists and the customer can read it
    assert action is not None
    assert REGISTRY.get(action.template) is Visibility.PUBLIC


def test_assessment_is_for_the_ticket_it_read():
    # given a ticket with another id
    snapshot = make_snapshot([description(CUSTOMER_ID)], id=777)

    # when planned
    assessment, action = decide(snapshot, now=at(0))

    # then the assessment and the action name that ticket
    assert assessment.ticket_id == 777
    assert action is not None and action.ticket_id == 777


# The audits decide: what Zendesk's quirks must not change ---------------------------------------


def test_marker_tags_copied_onto_a_follow_up_ticket_do_not_count_and_are_cleared():
    # given a new urgent ticket that inherited every marker tag of the closed one it follows
    snapshot = make_snapshot([description()],
                             tags=("vip", ACKNOWLEDGED_TAG, FOLLOWED_UP_TAG, CLOSED_TAG))

    # when assessed
    assessment, action = decide(snapshot, now=at(0))

    # then it is a new emergency: acknowledged, and the copied markers go with that write
    assert assessment.state is State.NEW
    assert action is not None and action.step is Step.ACKNOWLEDGE
    assert set(action.tags_to_remove) == {FOLLOWED_UP_TAG, CLOSED_TAG, ACKNOWLEDGED_TAG}


def test_stamps_of_an_earlier_emergency_do_not_count():
    # given a ticket acknowledged, followed up and closed in an earlier emergency, raised to
    # urgent again at minute 60
    earlier = [Stamp(str(step), EPISODE_ID - 1, 10 + n, at(n)) for n, step in
               enumerate((Step.ACKNOWLEDGE, Step.FOLLOW_UP, Step.CLOSE))]
    snapshot = make_snapshot([description(), public_reply(bot(), at(2))], stamps=earlier,
                             episode=Episode(EPISODE_ID, at(60)))

    # when assessed
    assessment, action = decide(snapshot, now=at(61))

    # then the new emergency is acknowledged: contact from before it does not count
    assert assessment.state is State.NEW
    assert action is not None and action.step is Step.ACKNOWLEDGE


def test_a_merge_note_is_neither_contact_nor_a_reply():
    # given a duplicate merged into the emergency by an agent, with a public merge note
    merge = Comment(id=77, author_id=AGENT_ID, public=True, created_at=at(1),
                    body="Request #102 was closed and merged into this request.", system=True)
    snapshot = make_snapshot([description(), merge])

    # when assessed
    assessment, action = decide(snapshot, now=at(2))

    # then nobody has made contact: the acknowledgement (and its bridge) goes out
    assert assessment.contact_at is None
    assert action is not None and action.step is Step.ACKNOWLEDGE


def test_an_agent_requester_is_the_customer():
    # given a requester who is an agent (a partner), who writes again before anyone answered
    partner = agent(id=CUSTOMER_ID, name="Pat Partner", email="pat@partner.example")
    people = {**default_people(), CUSTOMER_ID: partner}
    before = make_snapshot([description(), public_reply(partner, at(1))], people=people)

    # then their own words are not contact: they get the acknowledgement
    assert decide(before, now=at(1))[1].step is Step.ACKNOWLEDGE

    # and given our acknowledgement, their reply stops the timers
    after = make_snapshot([description(), public_reply(bot(), at(2)),
                           public_reply(partner, at(5))], people=people,
                          done=(Step.ACKNOWLEDGE,))
    assessment, action = decide(after, now=at(40))
    assert assessment.state is State.ENGAGED and action is None


def test_an_agent_copied_on_the_ticket_is_staff_and_an_end_user_cc_is_the_customer():
    colleague = agent(id=CC_ID, name="Cory Colleague", email="cory@support.example")
    people = {**default_people(), CC_ID: colleague}
    # an agent CC's public comment is contact
    snapshot = make_snapshot([description(), public_reply(colleague, at(3))], people=people)
    assert assess(snapshot, at(4), POLICY).contact_at == at(3)
    # an end-user CC's reply after contact stops the timers
    replied = contacted(public_reply(cc(), at(6)))
    assert assess(replied, at(40), POLICY).state is State.ENGAGED


@pytest.mark.parametrize(("age", "wait"), [(0, 2), (1, 1), (2, 0), (90, 0)])
def test_a_read_is_acted_on_only_two_seconds_after_the_tickets_last_change(age, wait):
    # given a ticket updated at minute 5, read `age` seconds later by Zendesk's clock
    snapshot = replace(make_snapshot([description()], updated_at=at(5)),
                       read_at=at(5, seconds=age))

    # then the worker waits what is left of the two seconds before acting on it
    assert snapshot.unsettled_for() == timedelta(seconds=wait)


def test_contact_from_before_the_ticket_became_urgent_again_in_the_same_second_does_not_count():
    # given our acknowledgement (audit 10) and, in the same second, the ticket lowered and
    # raised to urgent again (audit 12): a new emergency
    ack = Comment(id=50, author_id=bot().id, public=True, created_at=at(0), body="ack",
                  audit_id=10)
    snapshot = make_snapshot([description(), ack], episode=Episode(12, at(0)),
                             stamps=[Stamp(str(Step.ACKNOWLEDGE), 9, 10, at(0))])

    # when assessed: times alone (one second) cannot tell them apart, the audits' order can
    assessment, action = decide(snapshot, now=at(1))

    assert assessment.contact_at is None
    assert action is not None and action.step is Step.ACKNOWLEDGE


def test_a_ticket_whose_audits_never_show_it_raised_to_urgent_follows_up_once():
    # given an urgent ticket whose audits have no raise to urgent (imported, or migrated):
    # our writes are stamped for emergency 0, and followed up at minute 17
    snapshot = make_snapshot([description(), public_reply(bot(), at(2)),
                              public_reply(bot(), at(17))], episode=None, stamps=[
        Stamp(str(Step.ACKNOWLEDGE), 0, 10, at(2)), Stamp(str(Step.FOLLOW_UP), 0, 11, at(17))])
    snapshot = replace(snapshot, episode=None)

    # when assessed at minute 25
    assessment, action = decide(snapshot, now=at(25))

    # then the follow-up is done: no second one, the bridge closes at minute 32
    assert assessment.state is State.FOLLOWED_UP
    assert action is None and assessment.due_at == at(32)
