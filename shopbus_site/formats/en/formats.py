# Staff compare events by the second, and need to know which clock: "2026-11-26 13:27:33 UTC", not
# English's default "Nov. 26, 2026, 1:27 p.m.".
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
TIME_FORMAT = "H:i:s"
DATE_FORMAT = "Y-m-d"
