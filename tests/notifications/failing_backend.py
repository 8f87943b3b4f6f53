"""An email backend whose server is down, for exercising retries."""

import smtplib

from django.core.mail.backends.base import BaseEmailBackend


class UnreachableSmtpBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
