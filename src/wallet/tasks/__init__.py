"""The settlement queue (`broker`) and the taskiq tasks run from it (`settlement`).

Tasks are declared on taskiq's shared broker, which bootstrap binds to the queue each process
opens. Each task opens its own units of work and calls the domain; what it needs arrives in
the broker's state as a `TaskDeps`, put there by the process that runs it.
"""
