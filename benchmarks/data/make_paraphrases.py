"""Writes benchmarks/data/paraphrases.jsonl: the project's paraphrase set for bench_semantic.py.

Each written line is ``{"a": ..., "b": ..., "match": bool, "kind": ...}``: ``a`` is stored, ``b``
is asked.  Every base request below (written by hand) yields

* two pairs that should match: a light paraphrase (politeness, word order, a synonym or two) and
  a heavier one (reworded), ``kind`` ``paraphrase-light`` / ``paraphrase-heavy``;
* two near-misses that should not match: ``number`` (a number changed), ``identifier`` (an id,
  file name, currency, quoted string or code name changed), ``topic`` (the subject swapped,
  the wording kept) or ``negation`` (the request inverted, the wording kept).

    python benchmarks/data/make_paraphrases.py    # rewrites the .jsonl next to this file
"""

from __future__ import annotations

import json
from pathlib import Path

# (base, light paraphrase, heavy paraphrase, (near-miss, kind), (near-miss, kind))
BASES: list[tuple[str, str, str, tuple[str, str], tuple[str, str]]] = [
    (
        "Please refund order 1234, the teapot arrived broken.",
        "Could you refund order 1234? The teapot arrived broken.",
        "The teapot from order 1234 came smashed, I want my money back.",
        ("Please refund order 1235, the teapot arrived broken.", "number"),
        ("Please refund order 1234, the kettle arrived broken.", "topic"),
    ),
    (
        "How do I reset my password?",
        "How can I reset my password?",
        "I forgot my password, what are the steps to set a new one?",
        ("How do I reset my username?", "topic"),
        ("How do I keep my password from being reset?", "negation"),
    ),
    (
        "What is the capital of France?",
        "What's the capital of France?",
        "Which city is the capital of France?",
        ("What is the capital of Spain?", "topic"),
        ("What is the largest city of France?", "topic"),
    ),
    (
        "Convert 100 USD to EUR.",
        "Please convert 100 USD to EUR.",
        "How many EUR do I get for 100 USD?",
        ("Convert 100 USD to GBP.", "identifier"),
        ("Convert 150 USD to EUR.", "number"),
    ),
    (
        "Summarize the history of lighthouses in Norway.",
        "Please summarize the history of the lighthouses in Norway.",
        "Give me a short overview of how Norwegian lighthouses developed over time.",
        ("Summarize the history of lighthouses in Sweden.", "topic"),
        ("Summarize the history of windmills in Norway.", "topic"),
    ),
    (
        "Write a Python function that reverses a string.",
        "Write a Python function which reverses a string.",
        "Can you give me Python code to reverse a string?",
        ("Write a Python function that reverses a list.", "topic"),
        ("Write a Rust function that reverses a string.", "topic"),
    ),
    (
        "What does the error KeyError: 'user_id' mean?",
        "What does the error KeyError: 'user_id' mean here?",
        "Why am I getting KeyError: 'user_id' and what does it mean?",
        ("What does the error KeyError: 'user_name' mean?", "identifier"),
        ("What does the error TypeError: 'user_id' mean?", "identifier"),
    ),
    (
        "Translate 'good morning' into German.",
        "Please translate 'good morning' into German.",
        "How do you say 'good morning' in German?",
        ("Translate 'good night' into German.", "identifier"),
        ("Translate 'good morning' into Italian.", "topic"),
    ),
    (
        "What is the status of ticket ABC-42?",
        "What's the current status of ticket ABC-42?",
        "Can you tell me where ticket ABC-42 stands?",
        ("What is the status of ticket ABC-43?", "identifier"),
        ("What is the priority of ticket ABC-42?", "topic"),
    ),
    (
        "Book a table for 4 people at 7pm tonight.",
        "Please book a table for 4 people at 7pm tonight.",
        "I need a reservation tonight at 7pm, party of 4.",
        ("Book a table for 6 people at 7pm tonight.", "number"),
        ("Book a table for 4 people at 8pm tonight.", "identifier"),
    ),
    (
        "Explain how photosynthesis works.",
        "Can you explain how photosynthesis works?",
        "How do plants turn sunlight into energy?",
        ("Explain how respiration works.", "topic"),
        ("Explain how fermentation works.", "topic"),
    ),
    (
        "What is 17 times 23?",
        "What is 17 times 23, please?",
        "Multiply 17 by 23.",
        ("What is 17 times 24?", "number"),
        ("What is 18 times 23?", "number"),
    ),
    (
        "Send the invoice to ann@example.com.",
        "Please send the invoice to ann@example.com.",
        "Email the invoice over to ann@example.com.",
        ("Send the invoice to bob@example.com.", "identifier"),
        ("Send the receipt to ann@example.com.", "topic"),
    ),
    (
        "What does the function getUserById do?",
        "What does the getUserById function do?",
        "Explain what getUserById is for.",
        ("What does the function getUsersById do?", "identifier"),
        ("What does the function getUserByName do?", "identifier"),
    ),
    (
        "Give me a recipe for vegetarian lasagna.",
        "Could you give me a recipe for a vegetarian lasagna?",
        "How do I cook a meat-free lasagna?",
        ("Give me a recipe for vegetarian moussaka.", "topic"),
        ("Give me a recipe for beef lasagna.", "topic"),
    ),
    (
        "How long should I boil an egg for a soft yolk?",
        "How long do I boil an egg for a soft yolk?",
        "For a runny yolk, how many minutes does an egg need in boiling water?",
        ("How long should I boil an egg for a hard yolk?", "topic"),
        ("How long should I fry an egg for a soft yolk?", "topic"),
    ),
    (
        "Set a reminder for 9:30 tomorrow to call the dentist.",
        "Please set a reminder for 9:30 tomorrow to call the dentist.",
        "Remind me at 9:30 tomorrow that I have to phone the dentist.",
        ("Set a reminder for 10:30 tomorrow to call the dentist.", "number"),
        ("Set a reminder for 9:30 tomorrow to call the plumber.", "topic"),
    ),
    (
        "Is it safe to delete the /tmp directory?",
        "Is it safe to delete the /tmp directory on Linux?",
        "Can I remove /tmp without breaking anything?",
        ("Is it safe to delete the /var directory?", "identifier"),
        ("Is it safe to delete the /etc directory?", "identifier"),
    ),
    (
        "What are the symptoms of vitamin D deficiency?",
        "What are the usual symptoms of vitamin D deficiency?",
        "How can I tell if I am low on vitamin D?",
        ("What are the symptoms of vitamin B12 deficiency?", "identifier"),
        ("What are the causes of vitamin D deficiency?", "topic"),
    ),
    (
        "Rename the file report.txt to summary.txt.",
        "Please rename the file report.txt to summary.txt.",
        "Change the name of report.txt so it is called summary.txt.",
        ("Rename the file report.txt to notes.txt.", "identifier"),
        ("Rename the file draft.txt to summary.txt.", "identifier"),
    ),
    (
        "What is the boiling point of water at sea level?",
        "What's the boiling point of water at sea level?",
        "At what temperature does water boil at sea level?",
        ("What is the freezing point of water at sea level?", "topic"),
        ("What is the boiling point of ethanol at sea level?", "topic"),
    ),
    (
        "Cancel my subscription at the end of this month.",
        "Please cancel my subscription at the end of this month.",
        "I want to stop my subscription once this month is over.",
        ("Renew my subscription at the end of this month.", "negation"),
        ("Cancel my subscription at the end of this week.", "topic"),
    ),
    (
        "How many bones are in the adult human body?",
        "How many bones are there in the adult human body?",
        "What is the number of bones an adult human has?",
        ("How many muscles are in the adult human body?", "topic"),
        ("How many bones are in the adult cat body?", "topic"),
    ),
    (
        "Write a haiku about autumn leaves.",
        "Please write a haiku about autumn leaves.",
        "Compose a short haiku on falling autumn leaves.",
        ("Write a limerick about autumn leaves.", "topic"),
        ("Write a haiku about spring rain.", "topic"),
    ),
    (
        "Upgrade the server to 32 GB of RAM.",
        "Please upgrade the server to 32 GB of RAM.",
        "Give the server 32 GB of memory.",
        ("Upgrade the server to 64 GB of RAM.", "number"),
        ("Upgrade the server to 32 GB of disk.", "topic"),
    ),
    (
        "Who wrote the novel Pride and Prejudice?",
        "Who wrote the novel 'Pride and Prejudice'?",
        "Which author is behind Pride and Prejudice?",
        ("Who wrote the novel Sense and Sensibility?", "topic"),
        ("Who published the novel Pride and Prejudice?", "topic"),
    ),
    (
        "Move the meeting with the design team to Thursday.",
        "Please move the meeting with the design team to Thursday.",
        "Reschedule the design team meeting for Thursday.",
        ("Move the meeting with the design team to Friday.", "topic"),
        ("Move the meeting with the sales team to Thursday.", "topic"),
    ),
    (
        "What is the difference between TCP and UDP?",
        "What's the difference between TCP and UDP?",
        "How do TCP and UDP differ?",
        ("What is the difference between TCP and QUIC?", "identifier"),
        ("What is the difference between HTTP and UDP?", "identifier"),
    ),
    (
        "Transfer $250 from checking to savings.",
        "Please transfer $250 from checking to savings.",
        "Move $250 over from my checking account into savings.",
        ("Transfer $520 from checking to savings.", "number"),
        ("Transfer $250 from savings to checking.", "negation"),
    ),
    (
        "Explain the rules of chess castling.",
        "Can you explain the rules of castling in chess?",
        "When is a chess player allowed to castle?",
        ("Explain the rules of chess en passant.", "topic"),
        ("Explain the rules of checkers castling.", "topic"),
    ),
    (
        "Show me the logs of pod api-7f9c from the last hour.",
        "Please show me the logs of pod api-7f9c from the last hour.",
        "I need the last hour of logs for the api-7f9c pod.",
        ("Show me the logs of pod api-7f9d from the last hour.", "identifier"),
        ("Show me the logs of pod api-7f9c from the last day.", "topic"),
    ),
    (
        "Recommend a good book about the Roman Empire.",
        "Can you recommend a good book about the Roman Empire?",
        "Which book should I read to learn about ancient Rome's empire?",
        ("Recommend a good book about the Ottoman Empire.", "topic"),
        ("Recommend a good film about the Roman Empire.", "topic"),
    ),
    (
        "How do I turn on dark mode in the settings?",
        "How can I turn on dark mode in the settings?",
        "Where in the settings do I enable the dark theme?",
        ("How do I turn off dark mode in the settings?", "negation"),
        ("How do I turn on airplane mode in the settings?", "topic"),
    ),
    (
        "What year did the Berlin Wall fall?",
        "In what year did the Berlin Wall fall?",
        "When was the Berlin Wall torn down?",
        ("What year was the Berlin Wall built?", "topic"),
        ("What year did the Great Wall fall?", "topic"),
    ),
    (
        "Increase the timeout in config.yaml to 30 seconds.",
        "Please increase the timeout in config.yaml to 30 seconds.",
        "Set the config.yaml timeout to 30 seconds instead.",
        ("Increase the timeout in config.yaml to 60 seconds.", "number"),
        ("Increase the timeout in settings.yaml to 30 seconds.", "identifier"),
    ),
    (
        "Suggest a name for a bakery that sells sourdough.",
        "Could you suggest a name for a bakery that sells sourdough?",
        "I'm opening a sourdough bakery; what should I call it?",
        ("Suggest a name for a brewery that sells sourdough.", "topic"),
        ("Suggest a slogan for a bakery that sells sourdough.", "topic"),
    ),
    (
        "What is the population of Canada?",
        "What's the population of Canada?",
        "How many people live in Canada?",
        ("What is the population of Mexico?", "topic"),
        ("What is the area of Canada?", "topic"),
    ),
    (
        "Add milk and eggs to my shopping list.",
        "Please add milk and eggs to my shopping list.",
        "Put eggs and milk on the shopping list.",
        ("Remove milk and eggs from my shopping list.", "negation"),
        ("Add milk and bread to my shopping list.", "topic"),
    ),
    (
        "Why is the sky blue?",
        "Why is the sky blue during the day?",
        "What makes the sky look blue?",
        ("Why is the sea blue?", "topic"),
        ("Why is the sky red at sunset?", "topic"),
    ),
    (
        "Merge pull request #512 into main.",
        "Please merge pull request #512 into main.",
        "Go ahead and merge PR #512 into the main branch.",
        ("Merge pull request #513 into main.", "number"),
        ("Merge pull request #512 into develop.", "topic"),
    ),
    (
        "What are good exercises for lower back pain?",
        "What are some good exercises for lower back pain?",
        "Which exercises help with pain in the lower back?",
        ("What are good exercises for knee pain?", "topic"),
        ("What are good stretches for lower back pain?", "topic"),
    ),
    (
        "Schedule the backup job to run at 02:00 every day.",
        "Please schedule the backup job to run at 02:00 every day.",
        "Make the backup job run daily at 02:00.",
        ("Schedule the backup job to run at 03:00 every day.", "number"),
        ("Schedule the cleanup job to run at 02:00 every day.", "topic"),
    ),
    (
        "Describe the plot of the film Inception.",
        "Can you describe the plot of the film Inception?",
        "What happens in the movie Inception?",
        ("Describe the plot of the film Interstellar.", "topic"),
        ("Describe the soundtrack of the film Inception.", "topic"),
    ),
    (
        "How do I sort a dictionary by value in Python?",
        "How can I sort a dictionary by value in Python?",
        "In Python, what's the way to order a dict by its values?",
        ("How do I sort a dictionary by key in Python?", "topic"),
        ("How do I sort a dictionary by value in JavaScript?", "topic"),
    ),
    (
        "Give me 5 ideas for a birthday party for a 10 year old.",
        "Please give me 5 ideas for a birthday party for a 10 year old.",
        "I need 5 birthday party ideas for a child turning 10.",
        ("Give me 5 ideas for a birthday party for a 6 year old.", "number"),
        ("Give me 3 ideas for a birthday party for a 10 year old.", "number"),
    ),
    (
        "Is coffee bad for your heart?",
        "Is coffee bad for the heart?",
        "Does drinking coffee harm your heart?",
        ("Is coffee good for your heart?", "negation"),
        ("Is tea bad for your heart?", "topic"),
    ),
    (
        'Replace the word "colour" with "color" in the document.',
        'Please replace the word "colour" with "color" in the document.',
        'In the document, change every "colour" to "color".',
        ('Replace the word "flavour" with "flavor" in the document.', "identifier"),
        ('Replace the word "color" with "colour" in the document.', "negation"),
    ),
    (
        "What is the speed of light in a vacuum?",
        "What's the speed of light in a vacuum?",
        "How fast does light travel in a vacuum?",
        ("What is the speed of sound in a vacuum?", "topic"),
        ("What is the speed of light in water?", "topic"),
    ),
    (
        "Lock the front door at 11pm every night.",
        "Please lock the front door at 11pm every night.",
        "Every night at 11pm, make sure the front door gets locked.",
        ("Unlock the front door at 11pm every night.", "negation"),
        ("Lock the front door at 10pm every night.", "identifier"),
    ),
    (
        "What are the main causes of inflation?",
        "What are the main causes of inflation in an economy?",
        "Why do prices in an economy keep rising?",
        ("What are the main effects of inflation?", "topic"),
        ("What are the main causes of deflation?", "topic"),
    ),
    (
        "Deploy version 2.4.1 of the billing service to staging.",
        "Please deploy version 2.4.1 of the billing service to staging.",
        "Roll billing service 2.4.1 out to the staging environment.",
        ("Deploy version 2.4.2 of the billing service to staging.", "identifier"),
        ("Deploy version 2.4.1 of the billing service to production.", "topic"),
    ),
    (
        "How do I grow tomatoes on a balcony?",
        "How can I grow tomatoes on my balcony?",
        "What do I need to raise tomato plants on a balcony?",
        ("How do I grow strawberries on a balcony?", "topic"),
        ("How do I grow tomatoes in a greenhouse?", "topic"),
    ),
]


def pairs() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for base, light, heavy, miss1, miss2 in BASES:
        out.append({"a": base, "b": light, "match": True, "kind": "paraphrase-light"})
        out.append({"a": base, "b": heavy, "match": True, "kind": "paraphrase-heavy"})
        for text, kind in (miss1, miss2):
            out.append({"a": base, "b": text, "match": False, "kind": kind})
    return out


def main() -> None:
    path = Path(__file__).with_name("paraphrases.jsonl")
    rows = pairs()
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{path}: {len(rows)} pairs ({sum(bool(r['match']) for r in rows)} should match)")


if __name__ == "__main__":
    main()
