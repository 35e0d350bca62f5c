"""The GraphQL documents the measurements send: every SPEC §3 field of Mailbox, Conversation, Message, Patient.

Cyclic fields (a conversation's `mailbox.conversations`, its `patient.conversations`) are selected one level
only, as a client would.
"""

MESSAGE_FIELDS = """
  id sequence direction body sentAt clientMessageId senderName
  attachments { id filename contentType size url }
"""

PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"

CONVERSATION_FIELDS = f"""
  id status lastMessageAt unreadCount
  mailbox {{ id name status isSubscribed subscriberCount unreadCount }}
  patient {{ id fullName preferredPronoun dateOfBirth accountNumber }}
  messages(last: $messages) {{ totalCount {PAGE_INFO} edges {{ cursor node {{ {MESSAGE_FIELDS} }} }} }}
"""

MAILBOX_FIELDS = f"""
  id name status isSubscribed subscriberCount unreadCount
  subscribers {{ id username fullName }}
  conversations(first: $conversations) {{
    totalCount {PAGE_INFO} edges {{ cursor node {{ {CONVERSATION_FIELDS} }} }}
  }}
"""

MAILBOXES_PAGE = f"""
query MailboxesPage($practiceId: ID!, $conversations: Int!, $messages: Int!) {{
  mailboxes(practiceId: $practiceId) {{ {MAILBOX_FIELDS} }}
}}
"""

CONVERSATIONS_PAGE = f"""
query ConversationsPage($mailboxId: ID!, $conversations: Int!, $messages: Int!) {{
  mailbox(id: $mailboxId) {{ {MAILBOX_FIELDS} }}
}}
"""

MESSAGES_PAGE = f"""
query MessagesPage($conversationId: ID!, $messages: Int!) {{
  conversation(id: $conversationId) {{ {CONVERSATION_FIELDS} }}
}}
"""

THREAD_PAGE = f"""
query ThreadPage($conversationId: ID!, $messages: Int!) {{
  conversation(id: $conversationId) {{
    id status lastMessageAt unreadCount
    patient {{ id fullName preferredPronoun dateOfBirth accountNumber }}
    messages(last: $messages) {{ totalCount {PAGE_INFO} edges {{ cursor node {{ {MESSAGE_FIELDS} }} }} }}
  }}
}}
"""

# The same with the conversation's mailbox (id and name only), as a thread header shows it.
THREAD_PAGE_WITH_MAILBOX = THREAD_PAGE.replace("ThreadPage", "ThreadPageWithMailbox").replace(
    "unreadCount\n", "unreadCount\n    mailbox { id name }\n", 1
)

SEARCH = """
query Search($practiceId: ID!, $query: String!) {
  searchPatients(practiceId: $practiceId, query: $query, first: 20) {
    id fullName preferredPronoun dateOfBirth accountNumber
  }
}
"""

SEND = """
mutation Send($conversationId: ID!, $body: String!, $clientMessageId: String) {
  sendMessage(conversationId: $conversationId, body: $body, clientMessageId: $clientMessageId) { id sequence }
}
"""

CONVERSATION_EVENTS = """
subscription Live($conversationId: ID!) {
  conversationEvents(conversationId: $conversationId) {
    cursor kind message { id sequence body senderName }
  }
}
"""

# What the Workbench's conversation list sends (web/static/web/js/workbench.js, `Q.conversations`).
WORKBENCH_LIST = """
query Conversations($id: ID!, $status: ConversationStatus!) { mailbox(id: $id) { id name status isSubscribed
  conversations(status: $status, first: 50) { totalCount edges { node {
    id status lastMessageAt createdAt unreadCount patient { id fullName preferredPronoun dateOfBirth accountNumber }
  } } } } }
"""

# What the chart-summary widget sends for one patient (web/static/web/js/chart.js, `Q.patient`).
CHART_SUMMARY = """
query Chart($id: ID!) { patient(id: $id) { id fullName preferredPronoun dateOfBirth accountNumber
  conversations { id status lastMessageAt unreadCount mailbox { id name status practice { id } } } } }
"""

SEARCH_MESSAGES = """
query SearchMessages($practiceId: ID!, $query: String!) {
  searchMessages(practiceId: $practiceId, query: $query, first: 20) {
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node { id sequence direction body sentAt senderName }
      conversation { id mailbox { id name } patient { id fullName accountNumber } }
      snippet { text highlighted }
    }
  }
}
"""
