"""The state machine and its execution role, applied and torn down with the rest of provision_aws."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from eventbus import topology
from eventbus.provisioning import Action, Provisioner

from .definition import definition

logger = logging.getLogger(__name__)

# IAM is eventually consistent: Step Functions may refuse a role created seconds ago ("not authorized
# to assume the provided role") for up to about ten seconds, or longer now and then.
NEW_ROLE_PROPAGATION_SECONDS = 60
NEW_ROLE_RETRY_SECONDS = 5

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
# IAM is global and the role is shared by every region provisioned with the same prefix: each region
# keeps its own grant on it (`policy_name`) and removes only its own. The grant's name before that.
LEGACY_POLICY_NAME = "put-saga-commands"


def policy_name(region: str) -> str:
    return f"{LEGACY_POLICY_NAME}-{region}"


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def role_policy(bus_arn: str) -> dict[str, Any]:
    """The only thing the state machine does itself: put command events on the bus."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": bus_arn}],
    }


class StateMachineProvisioning:
    def _clients(self, provisioner: Provisioner):
        from eventbus import aws

        return aws.client("iam"), aws.client("stepfunctions")

    def _role_arn(self, provisioner: Provisioner) -> str:
        account, partition = provisioner.names.account, provisioner.names.partition
        return f"arn:{partition}:iam::{account}:role/{topology.state_machine_role_name()}"

    def _machine_arn(self, provisioner: Provisioner) -> str:
        return provisioner.names.arn("states", f"stateMachine:{topology.state_machine_name()}")

    def apply(self, provisioner: Provisioner) -> None:
        iam, sfn = self._clients(provisioner)
        role = topology.state_machine_role_name()
        tags = [{"Key": key, "Value": value} for key, value in sorted(provisioner.tags.items())]
        try:
            current_role = iam.get_role(RoleName=role)["Role"]
        except ClientError as exc:
            if _error_code(exc) != "NoSuchEntity":
                raise
            current_role = None
        if current_role is None and provisioner.change(Action.CREATE, "IAM role", role):
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY), Tags=tags)
        policy = role_policy(provisioner.names.bus_arn)
        ours = policy_name(provisioner.names.region)
        current_policy = _role_policy(iam, role, ours)
        if current_policy != policy:
            action = Action.CREATE if current_policy is None else Action.UPDATE
            if provisioner.change(action, "IAM role policy", f"{role}/{ours}"):
                iam.put_role_policy(RoleName=role, PolicyName=ours, PolicyDocument=json.dumps(policy))
        # Only once this region's own grant is in place, so its running executions never lack one.
        if _role_policy(iam, role, LEGACY_POLICY_NAME) == policy and provisioner.change(
            Action.DELETE, "IAM role policy", f"{role}/{LEGACY_POLICY_NAME}", "superseded by this region's own"
        ):
            iam.delete_role_policy(RoleName=role, PolicyName=LEGACY_POLICY_NAME)

        name, arn = topology.state_machine_name(), self._machine_arn(provisioner)
        desired = definition()
        try:
            current = sfn.describe_state_machine(stateMachineArn=arn)
        except ClientError as exc:
            if _error_code(exc) != "StateMachineDoesNotExist":
                raise
            current = None
        if current is None:
            if provisioner.change(Action.CREATE, "state machine", name, "Standard"):

                def create() -> None:
                    sfn.create_state_machine(
                        name=name,
                        definition=json.dumps(desired),
                        roleArn=self._role_arn(provisioner),
                        type="STANDARD",
                        tags=[{"key": tag["Key"], "value": tag["Value"]} for tag in tags],
                    )

                if current_role is None:
                    _while_the_new_role_propagates(create)
                else:
                    create()
            return
        drift = []
        if json.loads(current["definition"]) != desired:
            drift.append("definition")
        if current["roleArn"] != self._role_arn(provisioner):
            drift.append("role")
        if drift and provisioner.change(Action.UPDATE, "state machine", name, ", ".join(drift)):
            sfn.update_state_machine(
                stateMachineArn=arn, definition=json.dumps(desired), roleArn=self._role_arn(provisioner)
            )

    def teardown(self, provisioner: Provisioner) -> None:
        iam, sfn = self._clients(provisioner)
        name, arn = topology.state_machine_name(), self._machine_arn(provisioner)
        try:
            sfn.describe_state_machine(stateMachineArn=arn)
            if provisioner.change(Action.DELETE, "state machine", name):
                sfn.delete_state_machine(stateMachineArn=arn)
        except ClientError as exc:
            if _error_code(exc) != "StateMachineDoesNotExist":
                raise
        role = topology.state_machine_role_name()
        try:
            iam.get_role(RoleName=role)
        except ClientError as exc:
            if _error_code(exc) != "NoSuchEntity":
                raise
            return
        policy = role_policy(provisioner.names.bus_arn)
        grants = iam.list_role_policies(RoleName=role)["PolicyNames"]
        mine = [
            name
            for name in grants
            if name == policy_name(provisioner.names.region)
            or (name == LEGACY_POLICY_NAME and _role_policy(iam, role, name) == policy)
        ]
        for name in mine:
            if provisioner.change(Action.DELETE, "IAM role policy", f"{role}/{name}"):
                iam.delete_role_policy(RoleName=role, PolicyName=name)
        others = set(grants) - set(mine)
        if others:
            remaining = ", ".join(sorted(others))
            provisioner.change(Action.SKIP, "IAM role", role, f"other regions' grants remain: {remaining}")
        elif provisioner.change(Action.DELETE, "IAM role", role):
            iam.delete_role(RoleName=role)


def _while_the_new_role_propagates(call: Callable[[], None]) -> None:
    """`call`, again while Step Functions says it cannot assume the role just created, for at most
    NEW_ROLE_PROPAGATION_SECONDS. Any other refusal, or one that lasts, is raised."""
    deadline = time.monotonic() + NEW_ROLE_PROPAGATION_SECONDS
    while True:
        try:
            call()
            return
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if _error_code(exc) != "AccessDeniedException" or "assume" not in message or time.monotonic() > deadline:
                raise
            logger.info("the new role cannot be assumed yet (IAM propagates); trying again: %s", message)
            time.sleep(NEW_ROLE_RETRY_SECONDS)


def _role_policy(iam, role: str, name: str) -> dict[str, Any] | None:
    """The role's inline policy `name`, or None if it has none of that name."""
    try:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
        return None
    # boto3 decodes the URL-encoded JSON document; moto's may come back as a string.
    return json.loads(document) if isinstance(document, str) else document
